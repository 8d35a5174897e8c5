/**
 * A real Samba Active Directory domain controller for tests, as a plain process on 127.0.0.1.
 *
 * Samba's LDAP ports are fixed (389, 636), so only one runs at a time: a lock directory under
 * os.tmpdir() serialises users, and the domain lives in a fixed run directory there (the
 * provision writes absolute paths into its databases). Provisioning takes about ten seconds,
 * so the provisioned domain with its users is cached under os.tmpdir()/postern-samba-cache/<key>
 * and copied for each run. Only the LDAP service runs (no DNS, Kerberos, SMB); LDAPS and
 * StartTLS use a certificate from the test CA; simple binds without TLS are allowed
 * (`ldap server require strong auth = no`) so tests can show the backend refuses them itself.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess, findProgram } from './process.js';
import { makeTestCertificates, runProgram, type TestCertificates } from './slapd.js';

export const SAMBA_REALM = 'EXAMPLE.COM';
export const SAMBA_DOMAIN = 'EXAMPLE';
export const SAMBA_BASE_DN = 'DC=example,DC=com';

export interface SambaUser {
  readonly name: string;
  readonly password: string;
  readonly mail?: string;
  /** Values of proxyAddresses, e.g. `SMTP:alice@example.com`, `smtp:alias@example.com`. */
  readonly proxyAddresses?: readonly string[];
  readonly disabled?: boolean;
  /** accountExpires set in the past. */
  readonly expired?: boolean;
  /** pwdLastSet = 0: the password must be changed at next logon. */
  readonly mustChange?: boolean;
  /** Locked out at start-up by failed binds (the domain's lockout threshold is 3). */
  readonly locked?: boolean;
  /** Groups (by cn) the user is a direct member of. */
  readonly groups?: readonly string[];
}

export interface SambaGroup {
  readonly name: string;
  /** Groups (by cn) this group is a member of (nesting). */
  readonly memberOf?: readonly string[];
}

/** The seeded domain: every case the backend must tell apart. */
export const SAMBA_USERS: readonly SambaUser[] = [
  { name: 'alice', password: 'Alice-AD-Pass-1!', mail: 'alice@example.com', proxyAddresses: ['SMTP:alice@example.com', 'smtp:alice.alias@example.com'], groups: ['mailusers'] },
  { name: 'bob', password: 'Bob-AD-Pass-1!', mail: 'bob@example.com' },
  { name: 'disabled', password: 'Disabled-AD-Pass-1!', disabled: true, groups: ['mailusers'] },
  { name: 'locked', password: 'Locked-AD-Pass-1!', locked: true, groups: ['mailusers'] },
  { name: 'expired', password: 'Expired-AD-Pass-1!', expired: true, groups: ['mailusers'] },
  { name: 'mustchange', password: 'Mustchange-AD-Pass-1!', mustChange: true, groups: ['mailusers'] },
  { name: 'nested', password: 'Nested-AD-Pass-1!', groups: ['staff'] },
  { name: 'svc-postern', password: 'Service-AD-Pass-1!' },
];

export const SAMBA_GROUPS: readonly SambaGroup[] = [{ name: 'mailusers' }, { name: 'staff', memberOf: ['mailusers'] }];

export interface SambaAd {
  readonly realm: string;
  readonly domain: string;
  readonly baseDn: string;
  readonly adminUpn: string;
  readonly adminPassword: string;
  readonly users: readonly SambaUser[];
  /** The service account's UPN and password. */
  readonly serviceUpn: string;
  readonly servicePassword: string;
  readonly url: string;
  readonly ldapsUrl: string;
  readonly certificates: TestCertificates;
  readonly dir: string;
  readonly process: ManagedProcess;
  /** objectGUID of each user as Samba prints it (canonical string). */
  readonly guids: Readonly<Record<string, string>>;
  userDn(name: string): string;
  groupDn(name: string): string;
  stop(): Promise<void>;
}

const ADMIN_PASSWORD = 'Adm1n-AD-Pass-1!';
const PYTHON = '/usr/bin/python3';

/** Runs offline against the provisioned sam.ldb: users, groups, states; prints the GUIDs. */
const SETUP_PY = String.raw`
import json, sys
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
from samba.dcerpc import misc
from samba.ndr import ndr_unpack

conf, spec_file, out_file = sys.argv[1:4]
spec = json.load(open(spec_file))
lp = LoadParm()
lp.load(conf)
db = SamDB(url=lp.private_path('sam.ldb'), session_info=system_session(), lp=lp)
base = str(db.domain_dn())

def modify(dn, attr, values):
    lines = ['dn: ' + dn, 'changetype: modify', 'replace: ' + attr] + [attr + ': ' + v for v in values]
    db.modify_ldif('\n'.join(lines) + '\n')

modify(base, 'lockoutThreshold', ['3'])
for g in spec['groups']:
    db.newgroup(g['name'])
for u in spec['users']:
    db.newuser(u['name'], u['password'], mailaddress=u.get('mail'), force_password_change_at_next_login_req=bool(u.get('mustChange')))
    dn = 'CN=%s,CN=Users,%s' % (u['name'], base)
    if u.get('proxyAddresses'):
        modify(dn, 'proxyAddresses', u['proxyAddresses'])
    if u.get('disabled'):
        db.disable_account('(sAMAccountName=%s)' % u['name'])
    if u.get('expired'):
        # 2020-01-01T00:00:00Z as FILETIME.
        modify(dn, 'accountExpires', ['132223104000000000'])
    for g in u.get('groups', []):
        db.add_remove_group_members(g, [u['name']], add_members_operation=True)
for g in spec['groups']:
    for parent in g.get('memberOf', []):
        db.add_remove_group_members(parent, [g['name']], add_members_operation=True)
guids = {}
for u in spec['users']:
    res = db.search(base=base, expression='(sAMAccountName=%s)' % u['name'], attrs=['objectGUID'])
    guids[u['name']] = str(ndr_unpack(misc.GUID, res[0]['objectGUID'][0]))
json.dump(guids, open(out_file, 'w'))
`;

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One Samba at a time on this machine: a lock directory holding the owner's PID. */
async function acquireLock(lockDir: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      return async () => {
        await rm(lockDir, { recursive: true, force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      if (owner > 0 && !alive(owner)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (owner === 0) await rmdir(lockDir).catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`another Samba test (pid ${owner}) holds ${lockDir}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function provision(runDir: string, spec: { users: readonly SambaUser[]; groups: readonly SambaGroup[] }): Promise<void> {
  const sambaTool = findProgram('samba-tool', 'samba-common-bin');
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is required by samba-tool (install: python3-samba)`);
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  await runProgram(sambaTool, [
    'domain', 'provision',
    `--realm=${SAMBA_REALM}`, `--domain=${SAMBA_DOMAIN}`, '--server-role=dc', '--dns-backend=NONE',
    `--adminpass=${ADMIN_PASSWORD}`, `--targetdir=${join(runDir, 'dc')}`, '--host-name=dc1',
    '--option=interfaces=lo', '--option=bind interfaces only=yes', '--option=server services=ldap',
  ]);
  await writeFile(join(runDir, 'spec.json'), JSON.stringify(spec));
  await writeFile(join(runDir, 'setup.py'), SETUP_PY);
  await runProgram(PYTHON, [join(runDir, 'setup.py'), join(runDir, 'dc', 'etc', 'smb.conf'), join(runDir, 'spec.json'), join(runDir, 'guids.json')]);
}

export interface SambaOptions {
  /** How long to wait for another test's Samba to finish. Default 10 minutes. */
  readonly lockTimeoutMs?: number;
}

export async function startSambaAd(options: SambaOptions = {}): Promise<SambaAd> {
  const samba = findProgram('samba', 'samba');
  const users = SAMBA_USERS;
  const groups = SAMBA_GROUPS;
  const spec = { users, groups };
  const version = (await runProgram(samba, ['--version'])).trim();
  const key = createHash('sha256').update(version).update(SETUP_PY).update(JSON.stringify(spec)).digest('hex').slice(0, 16);
  const root = tmpdir();
  const release = await acquireLock(join(root, 'postern-samba.lock'), options.lockTimeoutMs ?? 600_000);
  const runDir = join(root, 'postern-samba-run');
  const cacheDir = join(root, 'postern-samba-cache', key);
  let process: ManagedProcess | null = null;
  try {
    for (const port of [389, 636]) {
      if (await portOpen(port)) throw new Error(`127.0.0.1:${port} is taken: Samba needs its fixed LDAP ports 389 and 636`);
    }
    if (!existsSync(join(cacheDir, 'ready'))) {
      await provision(runDir, spec);
      await rm(cacheDir, { recursive: true, force: true });
      await mkdir(join(root, 'postern-samba-cache'), { recursive: true });
      await runProgram('cp', ['-a', runDir, cacheDir]);
      await writeFile(join(cacheDir, 'ready'), version);
    } else {
      await rm(runDir, { recursive: true, force: true });
      await runProgram('cp', ['-a', cacheDir, runDir]);
    }
    const guids = JSON.parse(await readFile(join(runDir, 'guids.json'), 'utf8')) as Record<string, string>;
    const certificates = await makeTestCertificates(join(runDir, 'tls'));
    await chmod(certificates.keyFile, 0o600);
    process = await ManagedProcess.start({
      name: 'samba',
      program: samba,
      args: [
        '-i', '-M', 'single', '-s', join(runDir, 'dc', 'etc', 'smb.conf'),
        '--option=ldap server require strong auth=no',
        '--option=tls enabled=yes',
        `--option=tls keyfile=${certificates.keyFile}`,
        `--option=tls certfile=${certificates.certFile}`,
        `--option=tls cafile=${certificates.caFile}`,
      ],
      port: 636,
      readyTimeoutMs: 60_000,
    });
    const started = process;
    const tlsEnv = { LDAPTLS_CACERT: certificates.caFile, LDAPTLS_REQCERT: 'demand' };
    const ldapsearch = findProgram('ldapsearch', 'ldap-utils');
    // A bind then a base search of the root DSE (Samba has no Who am I? operation).
    const bindAs = (upn: string, password: string): Promise<string> =>
      runProgram(ldapsearch, ['-x', '-H', 'ldaps://127.0.0.1', '-D', upn, '-w', password, '-b', '', '-s', 'base', '(objectClass=*)', '1.1'], { env: tlsEnv });
    const baseDn = SAMBA_BASE_DN;
    // Ready when an LDAPS bind succeeds (the port opens a moment before the directory answers).
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await bindAs('Administrator@example.com', ADMIN_PASSWORD);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    for (const u of users.filter((x) => x.locked)) {
      // Threshold 3: three failed binds lock the account (badPwdCount, lockoutTime).
      for (let i = 0; i < 3; i++) {
        await bindAs(`${u.name}@example.com`, `wrong-${i}`).then(
          () => {
            throw new Error(`a wrong password bound as ${u.name}`);
          },
          (e: Error) => {
            if (!/Invalid credentials|\(49\)/.test(e.message)) throw e;
          },
        );
      }
    }
    const service = users.find((u) => u.name === 'svc-postern') as SambaUser;
    return {
      realm: SAMBA_REALM,
      domain: SAMBA_DOMAIN,
      baseDn,
      adminUpn: 'Administrator@example.com',
      adminPassword: ADMIN_PASSWORD,
      users,
      serviceUpn: 'svc-postern@example.com',
      servicePassword: service.password,
      url: 'ldap://127.0.0.1:389',
      ldapsUrl: 'ldaps://127.0.0.1:636',
      certificates,
      dir: runDir,
      process: started,
      guids,
      userDn: (name) => `CN=${name},CN=Users,${baseDn}`,
      groupDn: (name) => `CN=${name},CN=Users,${baseDn}`,
      async stop() {
        await started.stop();
        await rm(runDir, { recursive: true, force: true });
        await release();
      },
    };
  } catch (e) {
    await process?.stop();
    await release();
    throw e;
  }
}

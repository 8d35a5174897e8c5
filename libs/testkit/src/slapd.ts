/**
 * OpenLDAP (Debian slapd) for tests: a private slapd.conf and mdb database in a temp dir, on
 * free 127.0.0.1 ports for ldap:// and ldaps://, with the ppolicy overlay, seeded offline with
 * slapadd (users, a ppolicy-locked user, a service account, groups). Also the test CA that
 * makes server certificates (valid for 127.0.0.1, or deliberately for another host).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { ManagedProcess, findProgram } from './process.js';

/** Runs a program; rejects with its stderr when it exits non-zero. */
export function runProgram(program: string, args: readonly string[], options: { input?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      program,
      [...args],
      { env: { ...process.env, ...options.env }, cwd: options.cwd, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${program} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

export interface TestCertificates {
  readonly caFile: string;
  readonly ca: string;
  /** For 127.0.0.1 and localhost. */
  readonly certFile: string;
  readonly keyFile: string;
  /** Signed by the same CA but for `wrong.invalid` only: a client checking the host refuses it. */
  readonly mismatchedCertFile: string;
  readonly mismatchedKeyFile: string;
}

/** A CA and two server certificates made with openssl in `dir`. */
export async function makeTestCertificates(dir: string, extraDnsNames: readonly string[] = []): Promise<TestCertificates> {
  const openssl = findProgram('openssl', 'openssl');
  await mkdir(dir, { recursive: true });
  const p = (name: string): string => join(dir, name);
  await runProgram(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Postern Test CA', '-keyout', p('ca.key'), '-out', p('ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const issue = async (name: string, cn: string, san: string): Promise<void> => {
    await runProgram(openssl, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`)]);
    await writeFile(p(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
    await runProgram(openssl, ['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2',
      '-extfile', p(`${name}.ext`), '-out', p(`${name}.pem`)]);
  };
  await issue('server', '127.0.0.1', ['IP:127.0.0.1', 'DNS:localhost', ...extraDnsNames.map((n) => `DNS:${n}`)].join(','));
  await issue('mismatched', 'wrong.invalid', 'DNS:wrong.invalid');
  return {
    caFile: p('ca.pem'),
    ca: await readFile(p('ca.pem'), 'utf8'),
    certFile: p('server.pem'),
    keyFile: p('server.key'),
    mismatchedCertFile: p('mismatched.pem'),
    mismatchedKeyFile: p('mismatched.key'),
  };
}

export interface SlapdUser {
  readonly uid: string;
  readonly password: string;
  readonly cn?: string;
  readonly mail?: readonly string[];
  /** Seeded with pwdAccountLockedTime: ppolicy refuses every bind. */
  readonly locked?: boolean;
  /** Governed by the lockout policy (2 failures lock the account). */
  readonly lockoutPolicy?: boolean;
}

export interface SlapdGroup {
  readonly cn: string;
  /** uids of members (groupOfNames member DNs). */
  readonly members: readonly string[];
}

export interface SlapdOptions {
  readonly users?: readonly SlapdUser[];
  readonly groups?: readonly SlapdGroup[];
  /** Serve the certificate made for another host name (the client must refuse it). */
  readonly mismatchedCertificate?: boolean;
  /** Reuse certificates (e.g. so several servers share one CA). */
  readonly certificates?: TestCertificates;
  /** slapd log level (`-d`), e.g. `stats` to log every operation; default 0 (foreground, quiet). */
  readonly logLevel?: string;
}

export interface Slapd {
  readonly baseDn: string;
  readonly adminDn: string;
  readonly adminPassword: string;
  readonly serviceDn: string;
  readonly servicePassword: string;
  readonly port: number;
  readonly ldapsPort: number;
  /** ldap://127.0.0.1:port */
  readonly url: string;
  /** ldaps://127.0.0.1:port */
  readonly ldapsUrl: string;
  readonly certificates: TestCertificates;
  readonly dir: string;
  readonly process: ManagedProcess;
  userDn(uid: string): string;
  groupDn(cn: string): string;
  /** Applies LDIF changes as the admin (ldapmodify over ldap://). */
  modify(ldif: string): Promise<void>;
  /** ldapsearch as the admin; returns the LDIF output. */
  search(base: string, filter: string, attributes?: readonly string[]): Promise<string>;
  stop(): Promise<void>;
}

export const SLAPD_BASE_DN = 'dc=example,dc=com';

/** Default users: a normal one, one locked by ppolicy, one under the lockout policy. */
export const SLAPD_DEFAULT_USERS: readonly SlapdUser[] = [
  { uid: 'alice', password: 'alice-ldap-secret', cn: 'Alice Example', mail: ['alice@example.com', 'a.example@example.com'] },
  { uid: 'bob', password: 'bob-ldap-secret', cn: 'Bob Example', mail: ['bob@example.com'] },
  { uid: 'locked', password: 'locked-ldap-secret', locked: true },
  { uid: 'lockme', password: 'lockme-ldap-secret', lockoutPolicy: true },
];

export const SLAPD_DEFAULT_GROUPS: readonly SlapdGroup[] = [{ cn: 'mailusers', members: ['alice', 'locked', 'lockme'] }];

function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

function b64(value: string): string {
  return Buffer.from(value, 'utf8').toString('base64');
}

function seedLdif(baseDn: string, serviceDn: string, servicePassword: string, users: readonly SlapdUser[], groups: readonly SlapdGroup[]): string {
  const userDn = (uid: string): string => `uid=${uid},ou=people,${baseDn}`;
  const parts = [
    `dn: ${baseDn}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n`,
    `dn: ou=people,${baseDn}\nobjectClass: organizationalUnit\nou: people\n`,
    `dn: ou=groups,${baseDn}\nobjectClass: organizationalUnit\nou: groups\n`,
    `dn: ou=policies,${baseDn}\nobjectClass: organizationalUnit\nou: policies\n`,
    `dn: cn=default,ou=policies,${baseDn}\nobjectClass: pwdPolicy\nobjectClass: device\ncn: default\npwdAttribute: userPassword\npwdLockout: FALSE\n`,
    `dn: cn=lockout,ou=policies,${baseDn}\nobjectClass: pwdPolicy\nobjectClass: device\ncn: lockout\npwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 2\npwdLockoutDuration: 0\n`,
    `dn: ${serviceDn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: service\nuserPassword:: ${b64(ssha(servicePassword))}\n`,
  ];
  for (const u of users) {
    let e = `dn: ${userDn(u.uid)}\nobjectClass: inetOrgPerson\nuid: ${u.uid}\ncn: ${u.cn ?? u.uid}\nsn: ${u.uid}\nuserPassword:: ${b64(ssha(u.password))}\n`;
    for (const m of u.mail ?? []) e += `mail: ${m}\n`;
    if (u.locked) e += 'pwdAccountLockedTime: 000001010000Z\n';
    if (u.lockoutPolicy) e += `pwdPolicySubentry: cn=lockout,ou=policies,${baseDn}\n`;
    parts.push(e);
  }
  for (const g of groups) {
    let e = `dn: cn=${g.cn},ou=groups,${baseDn}\nobjectClass: groupOfNames\ncn: ${g.cn}\n`;
    for (const m of g.members) e += `member: ${userDn(m)}\n`;
    if (g.members.length === 0) e += `member: ${serviceDn}\n`;
    parts.push(e);
  }
  return parts.join('\n');
}

export async function startSlapd(options: SlapdOptions = {}): Promise<Slapd> {
  const slapd = findProgram('slapd', 'slapd');
  const slapadd = findProgram('slapadd', 'slapd');
  const ldapmodify = findProgram('ldapmodify', 'ldap-utils');
  const ldapsearch = findProgram('ldapsearch', 'ldap-utils');
  const dir = await mkdtemp(join(tmpdir(), 'postern-slapd-'));
  try {
    const certificates = options.certificates ?? (await makeTestCertificates(join(dir, 'tls')));
    const baseDn = SLAPD_BASE_DN;
    const adminDn = `cn=admin,${baseDn}`;
    const adminPassword = randomBytes(12).toString('hex');
    const serviceDn = `cn=service,${baseDn}`;
    const servicePassword = randomBytes(12).toString('hex');
    const dbDir = join(dir, 'db');
    await mkdir(dbDir);
    const cert = options.mismatchedCertificate ? certificates.mismatchedCertFile : certificates.certFile;
    const key = options.mismatchedCertificate ? certificates.mismatchedKeyFile : certificates.keyFile;
    const conf = [
      'include /etc/ldap/schema/core.schema',
      'include /etc/ldap/schema/cosine.schema',
      'include /etc/ldap/schema/inetorgperson.schema',
      `pidfile ${join(dir, 'slapd.pid')}`,
      `argsfile ${join(dir, 'slapd.args')}`,
      'modulepath /usr/lib/ldap',
      'moduleload back_mdb',
      'moduleload ppolicy',
      `TLSCACertificateFile ${certificates.caFile}`,
      `TLSCertificateFile ${cert}`,
      `TLSCertificateKeyFile ${key}`,
      'database mdb',
      `suffix "${baseDn}"`,
      `rootdn "${adminDn}"`,
      `rootpw ${adminPassword}`,
      `directory ${dbDir}`,
      'maxsize 104857600',
      'index objectClass eq',
      'index uid,mail,cn eq',
      'index member eq',
      'index entryUUID eq',
      'overlay ppolicy',
      `ppolicy_default "cn=default,ou=policies,${baseDn}"`,
      'ppolicy_use_lockout',
      'access to attrs=userPassword',
      '  by self =xw',
      '  by anonymous auth',
      '  by * none',
      'access to *',
      `  by dn.exact="${serviceDn}" read`,
      '  by self read',
      '  by * none',
      '',
    ].join('\n');
    const confFile = join(dir, 'slapd.conf');
    await writeFile(confFile, conf);
    await writeFile(join(dir, 'seed.ldif'), seedLdif(baseDn, serviceDn, servicePassword, options.users ?? SLAPD_DEFAULT_USERS, options.groups ?? SLAPD_DEFAULT_GROUPS));
    await runProgram(slapadd, ['-q', '-f', confFile, '-l', join(dir, 'seed.ldif')]);
    const port = await freePort();
    const ldapsPort = await freePort();
    const url = `ldap://127.0.0.1:${port}`;
    const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
    const process = await ManagedProcess.start({
      name: 'slapd',
      program: slapd,
      args: ['-d', options.logLevel ?? '0', '-f', confFile, '-h', `${url}/ ${ldapsUrl}/`],
      port: ldapsPort,
    });
    const adminArgs = ['-x', '-H', url, '-D', adminDn, '-w', adminPassword];
    return {
      baseDn,
      adminDn,
      adminPassword,
      serviceDn,
      servicePassword,
      port,
      ldapsPort,
      url,
      ldapsUrl,
      certificates,
      dir,
      process,
      userDn: (uid) => `uid=${uid},ou=people,${baseDn}`,
      groupDn: (cn) => `cn=${cn},ou=groups,${baseDn}`,
      async modify(ldif) {
        await runProgram(ldapmodify, adminArgs, { input: ldif });
      },
      search(base, filter, attributes = []) {
        return runProgram(ldapsearch, [...adminArgs, '-LLL', '-o', 'ldif-wrap=no', '-b', base, filter, ...attributes]);
      },
      async stop() {
        await process.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

// End to end through the running node with AUTH=ldap,passwd-file against a real slapd over
// LDAPS: LMTP delivery resolves the recipient by its LDAP mail attribute, Python poplib logs in
// with the LDAP password and fetches it; wrong, locked and not-in-group logins all get the same
// -ERR [AUTH] while the log records the real reason; a stopped directory gives -ERR [SYS/TEMP]
// within the deadline; a file user still logs in through the chain; no password reaches the log.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '@postern/config';
import { startSlapd, type Slapd } from '@postern/testkit';
import { loadServerConfig } from '../src/index.js';
import { lmtpSend } from './support/lmtp-client.js';
import { Pop3Client } from './support/pop3-client.js';
import { runOk } from './support/run.js';
import { assertNoSecretsInLogs, startTestServer, type LogRecord, type TestServer } from './support/server.js';

const POPLIB_FETCH = fileURLToPath(new URL('./support/poplib_fetch.py', import.meta.url));
const ALICE = 'alice-ldap-secret';
const CAROL = 'carol-file-secret';
const MESSAGE = Buffer.from('From: sender@example.net\r\nTo: alice@example.com\r\nSubject: via ldap\r\n\r\nHello through the directory.\r\n');

describe('LDAP authentication end to end (AUTH=ldap,passwd-file)', () => {
  let slapd: Slapd;
  let srv: TestServer;
  let dir: string;
  let ldapEnv: Record<string, string>;

  before(async () => {
    slapd = await startSlapd();
    dir = await mkdtemp(join(tmpdir(), 'postern-ldap-e2e-'));
    await writeFile(join(dir, 'bind-password'), `${slapd.servicePassword}\n`, { mode: 0o600 });
    ldapEnv = {
      AUTH: 'ldap,passwd-file',
      LDAP_URLS: slapd.ldapsUrl,
      LDAP_BIND_DN: slapd.serviceDn,
      LDAP_BIND_PASSWORD_FILE: join(dir, 'bind-password'),
      LDAP_BASE_DN: slapd.baseDn,
      LDAP_USER_FILTER: '(&(objectClass=inetOrgPerson)(uid=%u))',
      LDAP_CA_FILE: slapd.certificates.caFile,
      LDAP_REQUIRED_GROUP: slapd.groupDn('mailusers'),
      LDAP_MAILBOX_ATTRIBUTE: 'entryUUID',
      LDAP_MAIL_ATTRIBUTES: 'mail',
      LDAP_TIMEOUT_MS: '1000',
      LDAP_CONNECT_TIMEOUT_MS: '500',
    };
    srv = await startTestServer({ users: { carol: CAROL }, env: ldapEnv });
  });
  after(async () => {
    await srv?.stop();
    await slapd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const failedLogin = (user: string) => srv.waitForLog((r: LogRecord) => r.msg === 'login failed' && r.user === user);

  it('LMTP delivers to the LDAP mail address and Python poplib fetches it with the LDAP password', async () => {
    const result = await lmtpSend(srv.lmtpPort, 'sender@example.net', ['alice@example.com', 'nobody@example.com'], MESSAGE);
    assert.equal(result.rcpt[0]?.code, 250, JSON.stringify(result.rcpt));
    assert.equal(result.rcpt[1]?.code, 550, JSON.stringify(result.rcpt));
    assert.equal(result.data[0]?.code, 250);
    const out = join(dir, 'poplib');
    const { stdout } = await runOk('python3', [POPLIB_FETCH, 'plain', '127.0.0.1', String(srv.pop3Port), 'alice', ALICE, out]);
    const summary = JSON.parse(stdout.toString('utf8')) as { stat: [number, number] };
    assert.deepEqual(summary.stat, [1, MESSAGE.length]);
    assert.ok((await readFile(join(out, '1.eml'))).equals(MESSAGE));
  });

  it('wrong password, locked account and a user outside the required group all get -ERR [AUTH]; the log says why', async () => {
    const cases: [string, string, RegExp][] = [
      ['alice', 'wrong-password', /^invalid: wrong password/],
      ['locked', 'locked-ldap-secret', /^refused: account locked \(ppolicy/],
      ['bob', 'bob-ldap-secret', /^refused: not a member of cn=mailusers/],
      ['*', ALICE, /^invalid: unknown user/],
    ];
    for (const [user, password, reason] of cases) {
      const c = await Pop3Client.connect(srv.pop3Port);
      const logged = failedLogin(user);
      assert.match(await c.command(`USER ${user}`), /^\+OK/);
      assert.match(await c.command(`PASS ${password}`), /^-ERR \[AUTH\] /, user);
      assert.match(String((await logged).reason), reason, user);
      await c.quit();
    }
  });

  it('a passwd-file user logs in through the chain', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    assert.match(await c.login('carol', CAROL), /^\+OK/);
    await c.quit();
  });

  it('a stopped directory: -ERR [SYS/TEMP] within the deadline, then logins work again', async () => {
    await slapd.process.pause();
    try {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.command('USER alice'), /^\+OK/);
      const started = Date.now();
      // Not cached: this password was never tried.
      assert.match(await c.command('PASS not-tried-before'), /^-ERR \[SYS\/TEMP\] /);
      const took = Date.now() - started;
      assert.ok(took >= 400 && took < 3_000, `took ${took} ms`);
      await c.quit();
    } finally {
      slapd.process.signal('SIGCONT');
    }
    // A login the cache has never seen: the directory answers again.
    const c = await Pop3Client.connect(srv.pop3Port);
    assert.match(await c.login('lockme', 'lockme-ldap-secret'), /^\+OK/);
    await c.quit();
  });

  it('no password appears in the log', () => {
    assertNoSecretsInLogs(srv.logs, [ALICE, CAROL, 'wrong-password', 'locked-ldap-secret', 'bob-ldap-secret', 'not-tried-before', slapd.servicePassword]);
  });

  it('bad LDAP settings fail at start-up naming the key', () => {
    const load = (env: Record<string, string>) => () => loadServerConfig({ env: { DATA_DIR: dir, ...ldapEnv, ...env } });
    assert.throws(load({ LDAP_BASE_DN: '' }), (e: unknown) => e instanceof ConfigError && /LDAP_BASE_DN/.test(e.message));
    assert.throws(load({ LDAP_URLS: slapd.url }), (e: unknown) => e instanceof ConfigError && /LDAP_URLS: .*in the clear/.test(e.message));
    assert.throws(load({ LDAP_BIND_PASSWORD_FILE: join(dir, 'missing') }), (e: unknown) => e instanceof ConfigError && /LDAP_BIND_PASSWORD_FILE: cannot read/.test(e.message));
    assert.throws(load({ AUTH: 'ldap,kerberos' }), (e: unknown) => e instanceof ConfigError && /AUTH/.test(e.message));
    assert.deepEqual(loadServerConfig({ env: { DATA_DIR: dir } }).AUTH, ['passwd-file']);
  });
});

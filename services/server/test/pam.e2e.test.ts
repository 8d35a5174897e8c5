// AUTH=passwd-file,pam end to end: a Linux system user made by the test (useradd + chpasswd)
// receives mail over LMTP and reads it over POP3; a passwd-file user still works in front of it.
// Needs root (useradd, pam_unix reads /etc/shadow); without it the test fails, it does not skip.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { deliverAll, simpleMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const run = promisify(execFile);
const tag = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
const SERVICE = `postern-e2e-${tag}`;
const USER = `pe${tag}`;
const PASSWORD = `Pam-e2e-${randomBytes(6).toString('base64url')}`;

describe('AUTH=passwd-file,pam', () => {
  let srv: TestServer;
  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test needs root: it creates a system user with useradd');
    await writeFile(`/etc/pam.d/${SERVICE}`, 'auth required pam_unix.so nodelay\naccount required pam_unix.so\n');
    await run('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
    const chpasswd = run('chpasswd');
    chpasswd.child.stdin!.end(`${USER}:${PASSWORD}\n`);
    await chpasswd;
    srv = await startTestServer({
      users: { alice: 'alice-pam-e2e' },
      env: { AUTH: 'passwd-file,pam', PAM_SERVICE: SERVICE, PAM_FAILURE_DELAY_MS: '300', CREDENTIAL_CACHE_TTL_S: '0' },
    });
  });
  after(async () => {
    await srv?.stop();
    await run('userdel', [USER]).catch(() => undefined);
    await rm(`/etc/pam.d/${SERVICE}`, { force: true });
  });

  it('a system user receives mail over LMTP and retrieves it over POP3', async () => {
    const message = simpleMessage(`pam-${tag}`);
    await deliverAll(srv.lmtpPort, [USER], [message]);
    const c = await Pop3Client.connect(srv.pop3Port);
    const logged = srv.waitForLog((r) => r.msg === 'login' && r.user === USER);
    assert.match(await c.login(USER, PASSWORD), /^\+OK .*1 messages/);
    await logged;
    const retr = await c.multi('RETR 1');
    assert.deepEqual(retr.body, message.canonical);
    await c.quit();
  });

  it('wrong password, unknown user and root: -ERR [AUTH]; the passwd-file user still logs in', async () => {
    for (const [user, password] of [
      [USER, 'not-the-password'],
      [`nosuch${tag}`, PASSWORD],
      ['root', PASSWORD],
    ] as const) {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.command(`USER ${user}`), /^\+OK /);
      assert.match(await c.command(`PASS ${password}`), /^-ERR \[AUTH\] /);
      await c.quit();
    }
    const c = await Pop3Client.connect(srv.pop3Port);
    assert.match(await c.login('alice', 'alice-pam-e2e'), /^\+OK /);
    await c.quit();
    const failures = srv.logs.filter((l) => l.includes('"login failed"'));
    assert.ok(failures.some((l) => l.includes('PAM: Authentication failure')), 'the log has PAM\'s reason');
  });

  it('no password in the logs', () => {
    assertNoSecretsInLogs(srv.logs, [PASSWORD, 'alice-pam-e2e', 'not-the-password']);
  });
});

// Authentication end to end over raw sockets: USER/PASS, AUTH PLAIN and LOGIN (RFC 5034), APOP
// (RFC 1939), the plaintext policy with STLS (RFC 2595), failure replies that do not tell a
// wrong password from an unknown user, and a password file with a Dovecot SHA512-CRYPT hash.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Pop3Client } from './support/pop3-client.js';
import { runOk } from './support/run.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const ALICE = 'alice-auth-secret';
const CAROL = 'carol hashed secret';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const plainResponse = (user: string, password: string, authzid = ''): string => b64(`${authzid}\0${user}\0${password}`);
/** Everything a password could show up as in a log line. */
const SECRETS = [ALICE, CAROL, 'wrong-password', plainResponse('alice', ALICE), plainResponse('carol', CAROL), b64(ALICE), b64(CAROL)];

async function capa(c: Pop3Client): Promise<string[]> {
  return c.listing('CAPA');
}

function apopDigest(greeting: string, password: string): string {
  const ts = /(<[^>]+>)\s*$/.exec(greeting)?.[1];
  assert.ok(ts, `greeting carries an APOP timestamp: ${greeting}`);
  return createHash('md5').update(ts + password, 'utf8').digest('hex');
}

describe('authentication', () => {
  let srv: TestServer;
  let never: TestServer;
  let ca: Buffer;
  /** Why carol's hash could not be made (doveadm missing or failing); her test then fails with it. */
  let doveadmError: Error | null = null;

  before(async () => {
    const passwdLines = [`alice:{PLAIN}${ALICE}`];
    try {
      // `-c /dev/null`: no dependency on whatever /etc/dovecot holds.
      const { stdout } = await runOk('doveadm', ['-c', '/dev/null', 'pw', '-s', 'SHA512-CRYPT', '-p', CAROL]);
      const hash = stdout.toString('utf8').trim();
      assert.match(hash, /^\{SHA512-CRYPT\}\$6\$/);
      passwdLines.push(`carol:${hash}`);
    } catch (e) {
      doveadmError = e as Error;
    }
    srv = await startTestServer({ passwdLines });
    never = await startTestServer({ passwdLines, env: { PLAINTEXT_AUTH: 'never' } });
    ca = await readFile(srv.certFile);
  });
  after(async () => {
    await srv?.stop();
    await never?.stop();
  });

  describe('plaintext policy', () => {
    it('default (loopback): from 127.0.0.1, CAPA offers USER and SASL PLAIN LOGIN, and USER/PASS works', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      const caps = await capa(c);
      assert.ok(caps.includes('USER'), caps.join(','));
      assert.ok(caps.includes('SASL PLAIN LOGIN'), caps.join(','));
      assert.ok(caps.includes('STLS'), caps.join(','));
      assert.ok(caps.includes('RESP-CODES') && caps.includes('AUTH-RESP-CODE'), caps.join(','));
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();
    });

    it('never: on the plain port CAPA lacks USER and SASL, and USER and AUTH PLAIN get -ERR [AUTH]', async () => {
      const c = await Pop3Client.connect(never.pop3Port);
      const caps = await capa(c);
      assert.ok(!caps.includes('USER'), caps.join(','));
      assert.ok(!caps.some((l) => l.startsWith('SASL')), caps.join(','));
      assert.ok(caps.includes('STLS'), caps.join(','));
      assert.match(await c.command('USER alice'), /^-ERR \[AUTH\] /);
      assert.match(await c.command(`AUTH PLAIN ${plainResponse('alice', ALICE)}`), /^-ERR \[AUTH\] /);
      assert.match(await c.command('AUTH LOGIN'), /^-ERR \[AUTH\] /);
      // PASS without a USER is not a way around it.
      assert.match(await c.command(`PASS ${ALICE}`), /^-ERR /);
      await c.quit();
    });

    it('never: after STLS, CAPA offers USER and SASL and both USER/PASS and AUTH PLAIN work', async () => {
      const c = await Pop3Client.connect(never.pop3Port);
      assert.match(await c.stls(ca), /^\+OK /);
      const caps = await capa(c);
      assert.ok(caps.includes('USER'), caps.join(','));
      assert.ok(caps.includes('SASL PLAIN LOGIN'), caps.join(','));
      assert.ok(!caps.includes('STLS'), 'no STLS once TLS is on');
      assert.match(await c.command('STLS'), /^-ERR /);
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();

      const d = await Pop3Client.connect(never.pop3Port);
      await d.stls(ca);
      assert.match(await d.command(`AUTH PLAIN ${plainResponse('alice', ALICE)}`), /^\+OK Logged in/);
      await d.quit();
    });

    it('commands pipelined in the clear after STLS are discarded, not run inside TLS', async () => {
      const c = await Pop3Client.connect(never.pop3Port);
      assert.match(await c.stls(ca, 'USER alice\r\nCAPA\r\n'), /^\+OK /);
      // The first reply inside TLS answers this PASS: no CAPA listing, and no USER remembered.
      assert.equal(await c.command(`PASS ${ALICE}`), '-ERR No username given, use USER first.');
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();
    });

    it('never: on the implicit-TLS port USER/PASS works', async () => {
      const c = await Pop3Client.connect(never.pop3sPort, { tlsCa: ca });
      const caps = await capa(c);
      assert.ok(caps.includes('USER') && !caps.includes('STLS'), caps.join(','));
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();
    });
  });

  describe('mechanisms', () => {
    it('AUTH PLAIN with an initial response', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.command(`AUTH PLAIN ${plainResponse('alice', ALICE)}`), /^\+OK Logged in/);
      assert.match(await c.command('STAT'), /^\+OK \d+ \d+$/);
      await c.quit();
    });

    it('AUTH PLAIN without an initial response (empty challenge, then the response)', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.equal(await c.command('AUTH PLAIN'), '+ ');
      assert.match(await c.command(plainResponse('alice', ALICE)), /^\+OK Logged in/);
      await c.quit();
    });

    it('AUTH PLAIN with an authorization identity equal to the user', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.command(`AUTH PLAIN ${plainResponse('alice', ALICE, 'alice')}`), /^\+OK Logged in/);
      await c.quit();
    });

    it('AUTH LOGIN: Username: and Password: challenges, then +OK', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.equal(await c.command('AUTH LOGIN'), `+ ${b64('Username:')}`);
      assert.equal(await c.command(b64('alice')), `+ ${b64('Password:')}`);
      assert.match(await c.command(b64(ALICE)), /^\+OK Logged in/);
      await c.quit();
    });

    it('AUTH LOGIN with the user name as initial response', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.equal(await c.command(`AUTH LOGIN ${b64('alice')}`), `+ ${b64('Password:')}`);
      assert.match(await c.command(b64(ALICE)), /^\+OK Logged in/);
      await c.quit();
    });

    it('a cancelled SASL exchange (*) leaves the connection usable', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.equal(await c.command('AUTH PLAIN'), '+ ');
      assert.match(await c.command('*'), /^-ERR /);
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();
    });

    it('APOP with md5(timestamp + password) from the greeting (PLAIN entries in the password file)', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.command(`APOP alice ${apopDigest(c.greeting, ALICE)}`), /^\+OK Logged in/);
      await c.quit();
    });

    it('APOP with a digest made for another greeting fails with -ERR [AUTH]', async () => {
      const old = await Pop3Client.connect(srv.pop3Port);
      const digest = apopDigest(old.greeting, ALICE);
      await old.quit();
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.notEqual(c.greeting, old.greeting, 'each connection gets its own timestamp');
      assert.match(await c.command(`APOP alice ${digest}`), /^-ERR \[AUTH\] /);
      await c.quit();
    });

    it('a SHA512-CRYPT entry made by doveadm logs in with USER/PASS and AUTH PLAIN, not with a wrong password', async () => {
      if (doveadmError) throw doveadmError;
      const c = await Pop3Client.connect(srv.pop3Port);
      assert.match(await c.login('carol', CAROL), /^\+OK Logged in/);
      await c.quit();
      const d = await Pop3Client.connect(srv.pop3Port);
      assert.match(await d.command(`AUTH PLAIN ${plainResponse('carol', CAROL)}`), /^\+OK Logged in/);
      await d.quit();
      const e = await Pop3Client.connect(srv.pop3Port);
      assert.match(await e.command('USER carol'), /^\+OK /);
      assert.match(await e.command('PASS wrong-password'), /^-ERR \[AUTH\] /);
      await e.quit();
    });
  });

  describe('failures', () => {
    /** The reply to a failed login on a fresh connection. */
    async function failWith(attempt: (c: Pop3Client) => Promise<string>): Promise<string> {
      const c = await Pop3Client.connect(srv.pop3Port);
      const reply = await attempt(c);
      await c.quit();
      return reply;
    }
    const userPass = (user: string, password: string) => async (c: Pop3Client) => {
      // USER never reveals whether the user exists.
      assert.equal(await c.command(`USER ${user}`), '+OK Send your password.');
      return c.command(`PASS ${password}`);
    };
    const authPlain = (user: string, password: string) => (c: Pop3Client) => c.command(`AUTH PLAIN ${plainResponse(user, password)}`);
    const authLogin = (user: string, password: string) => async (c: Pop3Client) => {
      await c.command('AUTH LOGIN');
      await c.command(b64(user));
      return c.command(b64(password));
    };
    const apop = (user: string, password: string) => (c: Pop3Client) => c.command(`APOP ${user} ${apopDigest(c.greeting, password)}`);

    for (const [name, method] of [
      ['USER/PASS', userPass],
      ['AUTH PLAIN', authPlain],
      ['AUTH LOGIN', authLogin],
      ['APOP', apop],
    ] as const) {
      it(`${name}: a wrong password gets -ERR [AUTH], and an unknown user the exact same reply`, async () => {
        const wrong = await failWith(method('alice', 'wrong-password'));
        const unknown = await failWith(method('nosuchuser', 'wrong-password'));
        const hashedWrong = name === 'APOP' ? wrong : await failWith(method('carol', 'wrong-password'));
        assert.match(wrong, /^-ERR \[AUTH\] /);
        assert.equal(unknown, wrong);
        assert.equal(hashedWrong, wrong);
      });
    }

    it('AUTH PLAIN for another authorization identity is refused like a wrong password', async () => {
      const wrong = await failWith(authPlain('alice', 'wrong-password'));
      const proxy = await failWith((c) => c.command(`AUTH PLAIN ${plainResponse('alice', ALICE, 'carol')}`));
      assert.equal(proxy, wrong);
    });

    it('a failed login leaves the connection in AUTHORIZATION, where a correct login then works', async () => {
      const c = await Pop3Client.connect(srv.pop3Port);
      await c.command('USER alice');
      assert.match(await c.command('PASS wrong-password'), /^-ERR \[AUTH\] /);
      assert.match(await c.command('STAT'), /^-ERR /);
      assert.match(await c.login('alice', ALICE), /^\+OK Logged in/);
      await c.quit();
    });
  });

  it('never logs a password, a SASL response or an APOP digest input', () => {
    assertNoSecretsInLogs([...srv.logs, ...never.logs], SECRETS);
    // The debug level is on, so the sessions above did log.
    assert.ok(srv.logs.some((l) => l.includes('"msg":"login"')));
    assert.ok(srv.logs.some((l) => l.includes('"msg":"login failed"')));
  });
});

describe('LOGIN-DELAY (RFC 2449)', () => {
  it('is advertised, and a second login to the same mailbox within it gets -ERR [LOGIN-DELAY]', async () => {
    const t = await startTestServer({ users: { alice: 'a-secret', bob: 'b-secret' }, env: { LOGIN_DELAY: '60' } });
    try {
      const first = await Pop3Client.connect(t.pop3Port);
      assert.ok((await first.listing('CAPA')).includes('LOGIN-DELAY 60'));
      // A wrong password does not use up the slot.
      assert.match(await first.command('USER alice'), /^\+OK/);
      assert.match(await first.command('PASS wrong'), /^-ERR \[AUTH\]/);
      await first.login('alice', 'a-secret');
      await first.quit();
      const second = await Pop3Client.connect(t.pop3Port);
      assert.match(await second.command('USER alice'), /^\+OK/);
      assert.match(await second.command('PASS a-secret'), /^-ERR \[LOGIN-DELAY\] /);
      // Another mailbox is not affected.
      await second.login('bob', 'b-secret');
      await second.quit();
    } finally {
      await t.stop();
    }
  });
});

// Abuse limits end to end: over-long command lines, MAX_BAD_COMMANDS, MAX_AUTH_FAILURES,
// LOGIN_TIMEOUT_MS and MAX_CONNECTIONS_PER_IP. Each waits for the server's reply and the close
// of the connection, never for a fixed time.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const USERS = { alice: 'alice-limits-pw', bob: 'bob-limits-pw' };

describe('limits', () => {
  let srv: TestServer;
  let perIp: TestServer;

  before(async () => {
    srv = await startTestServer({
      users: USERS,
      env: { MAX_BAD_COMMANDS: '3', MAX_AUTH_FAILURES: '2', LOGIN_TIMEOUT_MS: '1000' },
    });
    perIp = await startTestServer({ users: USERS, env: { MAX_CONNECTIONS_PER_IP: '2' } });
  });
  after(async () => {
    await srv?.stop();
    await perIp?.stop();
  });

  it('a 300-octet command line gets -ERR and the connection stays usable', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    const line = `NOOP ${'x'.repeat(300 - 7)}`;
    assert.equal(Buffer.byteLength(`${line}\r\n`), 300);
    assert.equal(await c.command(line), '-ERR Line too long.');
    assert.match(await c.login('alice', USERS.alice), /^\+OK /);
    assert.equal(await c.command(`LIST ${'1'.repeat(296)}`), '-ERR Line too long.');
    assert.match(await c.command('STAT'), /^\+OK /);
    await c.quit();
  });

  it('a line of 20000 octets without a line end is refused as one bad command, and the next command is read', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    c.write('X'.repeat(20_000));
    c.write('\r\nCAPA\r\n');
    assert.match(await c.line(), /^-ERR /);
    const caps = await c.readMulti();
    assert.match(caps.status, /^\+OK /);
    await c.quit();
  });

  it('the line limit is 255 octets with CRLF (RFC 2449): 255 passes, 256 does not', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    // USER takes one argument of any length up to the limit.
    assert.equal(await c.command(`USER ${'u'.repeat(255 - 7)}`), '+OK Send your password.');
    assert.equal(await c.command(`USER ${'u'.repeat(256 - 7)}`), '-ERR Line too long.');
    await c.quit();
  });

  it('MAX_BAD_COMMANDS (3): the third bad command closes the connection', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    assert.equal(await c.command('BOGUS'), '-ERR Unknown command.');
    assert.equal(await c.command('X'.repeat(300)), '-ERR Line too long.');
    assert.equal(await c.command('RETR 1'), '-ERR Too many bad commands, closing connection.');
    await c.closed;
    assert.equal(c.unread(), '');
  });

  it('MAX_BAD_COMMANDS also counts after login', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    await c.login('alice', USERS.alice);
    const port = c.localPort;
    const ended = srv.waitForLog((r) => r.msg === 'session end' && r.port === port);
    assert.equal(await c.command('FOO'), '-ERR Unknown command.');
    assert.equal(await c.command('USER alice'), '-ERR Already logged in.');
    assert.equal(await c.command('RETR'), '-ERR Too many bad commands, closing connection.');
    await c.closed;
    await ended;
    // The lock went with the connection: a new session logs in.
    const d = await Pop3Client.connect(srv.pop3Port);
    assert.match(await d.login('alice', USERS.alice), /^\+OK /);
    await d.quit();
  });

  it('MAX_AUTH_FAILURES (2): the second failed login closes the connection', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    await c.command('USER alice');
    assert.equal(await c.command('PASS wrong-1'), '-ERR [AUTH] Authentication failed.');
    await c.command('USER bob');
    assert.equal(await c.command('PASS wrong-2'), '-ERR [AUTH] Authentication failed. Too many failures, closing connection.');
    await c.closed;
  });

  it('LOGIN_TIMEOUT_MS (1000): an idle connection before login gets -ERR and is closed', async () => {
    const started = Date.now();
    const c = await Pop3Client.connect(srv.pop3Port);
    const reply = await c.line();
    await c.closed;
    const elapsed = Date.now() - started;
    assert.equal(reply, '-ERR Disconnected for inactivity.');
    assert.ok(elapsed >= 950, `closed after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < 10_000, `closed after ${elapsed} ms`);
  });

  it('LOGIN_TIMEOUT_MS counts from the last command: a client busy for longer than the timeout stays connected', async () => {
    const c = await Pop3Client.connect(srv.pop3Port);
    const started = Date.now();
    let rounds = 0;
    // Back-to-back CAPA for 1.5 timeouts: each reply is awaited, nothing sleeps.
    while (Date.now() - started < 1500) {
      assert.match((await c.multi('CAPA')).status, /^\+OK /);
      rounds++;
    }
    assert.ok(rounds > 1);
    assert.match(await c.login('bob', USERS.bob), /^\+OK /);
    await c.quit();
  });

  it('MAX_CONNECTIONS_PER_IP (2): the third connection gets -ERR [SYS/TEMP] and is closed; a slot frees when one ends', async () => {
    const a = await Pop3Client.connect(perIp.pop3Port);
    const b = await Pop3Client.connect(perIp.pop3Port);
    assert.match(a.greeting, /^\+OK /);
    assert.match(b.greeting, /^\+OK /);
    const third = await Pop3Client.connect(perIp.pop3Port);
    assert.equal(third.greeting, '-ERR [SYS/TEMP] Too many connections, try again later.');
    await third.closed;
    // The implicit-TLS listener counts the same connections.
    const ca = readFileSync(perIp.certFile);
    const tlsThird = await Pop3Client.connect(perIp.pop3sPort, { tlsCa: ca });
    assert.equal(tlsThird.greeting, '-ERR [SYS/TEMP] Too many connections, try again later.');
    await tlsThird.closed;
    // The two admitted connections work.
    assert.match(await a.login('alice', USERS.alice), /^\+OK /);
    assert.match(await b.login('bob', USERS.bob), /^\+OK /);
    const aPort = a.localPort;
    const ended = perIp.waitForLog((r) => r.msg === 'session end' && r.port === aPort);
    await a.quit();
    await ended;
    const c = await Pop3Client.connect(perIp.pop3Port);
    assert.match(c.greeting, /^\+OK /);
    await c.quit();
    await b.quit();
  });

  it('MAX_CONNECTIONS_PER_IP_PER_MINUTE (3): the fourth new connection within the minute is refused', async () => {
    const rated = await startTestServer({ users: USERS, env: { MAX_CONNECTIONS_PER_IP_PER_MINUTE: '3' } });
    try {
      for (let i = 0; i < 3; i++) {
        const c = await Pop3Client.connect(rated.pop3Port);
        assert.match(c.greeting, /^\+OK /);
        await c.quit();
      }
      const fourth = await Pop3Client.connect(rated.pop3Port);
      assert.equal(fourth.greeting, '-ERR [SYS/TEMP] Too many connections, try again later.');
      await fourth.closed;
      assert.ok(rated.logs.some((l) => l.includes('"limit":"ip_rate"')), 'the refusal is logged with its reason');
    } finally {
      await rated.stop();
    }
  });

  it('never logs a password', () => {
    assertNoSecretsInLogs([...srv.logs, ...perIp.logs], [...Object.values(USERS), 'wrong-1', 'wrong-2']);
  });
});

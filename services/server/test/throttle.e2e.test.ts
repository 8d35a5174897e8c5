// Brute-force protection end to end. Client addresses come from PROXY protocol headers (the real
// client address the throttle counts), sent from 127.0.0.1, which the server trusts for them.
// Design (docs/decisions.md): failures count per address and per account; growing delays, then
// refusal without verifying, answered like a wrong password. A success trusts its
// (address, account) pair, so an attacker spraying one account from other addresses cannot
// refuse the owner's usual client; an address the account never logged in from is refused while
// the account is over its limit.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ManagedProcess, freePort, pollUntil } from '@postern/testkit';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';
import { sharedTls } from './support/tls.js';

const USERS = { alice: 'alice-throttle-pw', bob: 'bob-throttle-pw', carol: 'carol-throttle-pw' };
const LIMITS = {
  AUTH_THROTTLE_USER_FAILURES: '3',
  AUTH_THROTTLE_IP_FAILURES: '6',
  AUTH_THROTTLE_WINDOW_S: '600',
  AUTH_THROTTLE_BLOCK_S: '600',
  AUTH_THROTTLE_MAX_DELAY_MS: '600',
  PROXY_TRUSTED_NETWORKS: '127.0.0.1',
  // The clients claim public addresses; plaintext USER/PASS stays allowed for the test.
  PLAINTEXT_AUTH: 'always',
};

/** A connection that claims client address `ip` in a PROXY v1 header; resolves after the greeting. */
async function from(port: number, ip: string): Promise<Pop3Client> {
  const c = await Pop3Client.open(port);
  c.write(`PROXY TCP4 ${ip} 127.0.0.1 40000 110\r\n`);
  c.greeting = await c.line();
  assert.match(c.greeting, /^\+OK /);
  return c;
}

/** USER/PASS on a new connection from `ip`: the PASS reply and how long it took (ms). */
async function attempt(port: number, ip: string, user: string, password: string): Promise<{ reply: string; ms: number }> {
  const c = await from(port, ip);
  assert.match(await c.command(`USER ${user}`), /^\+OK /);
  const start = performance.now();
  const reply = await c.command(`PASS ${password}`);
  const ms = performance.now() - start;
  if (reply.startsWith('+OK')) await c.quit();
  else c.socket.destroy();
  return { reply, ms };
}

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('login throttle (one process)', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ users: USERS, env: LIMITS });
  });
  after(() => srv?.stop());

  it('spraying one account: growing delays, then refusal without verifying; the owner keeps logging in from her address', async () => {
    const owner = '198.51.100.20';
    const attacker = '203.0.113.66';
    // Alice's own client, before the attack: this makes (her address, alice) trusted.
    assert.match((await attempt(srv.pop3Port, owner, 'alice', USERS.alice)).reply, /^\+OK /);

    const tries = [];
    for (let i = 0; i < 3; i++) tries.push(await attempt(srv.pop3Port, attacker, 'alice', `guess-${i}`));
    for (const t of tries) assert.match(t.reply, /^-ERR \[AUTH\] /);
    // Delays before verifying: 0, then 1/3 and 2/3 of the 600 ms maximum.
    assert.ok(tries[1]!.ms >= 190 && tries[2]!.ms >= 390, `delays ${tries.map((t) => Math.round(t.ms)).join(', ')}`);
    assert.ok(tries[0]!.ms < tries[2]!.ms);

    const before = await srv.server.metrics.text();
    const logged = srv.waitForLog((r) => r.msg === 'login failed' && String(r.reason).startsWith('throttled (user)'));
    // The right password from the attacker's address is refused now, and answered like a wrong one.
    const refused = await attempt(srv.pop3Port, attacker, 'alice', USERS.alice);
    assert.match(refused.reply, /^-ERR \[AUTH\] /);
    assert.ok(refused.ms >= 590, `a refusal waits the maximum delay, took ${Math.round(refused.ms)} ms`);
    await logged;
    // So is an address alice never logged in from (the account is over its limit) ...
    assert.match((await attempt(srv.pop3Port, '192.0.2.55', 'ALICE', USERS.alice)).reply, /^-ERR \[AUTH\] /);
    const afterRefusals = await srv.server.metrics.text();
    // ... and neither refusal reached the account backend.
    const verified = (t: string) => metric(t, 'postern_auth_duration_seconds_count', '{backend="passwd-file"}');
    assert.equal(verified(afterRefusals), verified(before));
    assert.equal(metric(afterRefusals, 'postern_auth_throttled_total', '{reason="user"}'), 2);

    // Alice's own client is not locked out, and her success resets the account counter.
    assert.match((await attempt(srv.pop3Port, owner, 'alice', USERS.alice)).reply, /^\+OK /);
    assert.match((await attempt(srv.pop3Port, '192.0.2.56', 'alice', USERS.alice)).reply, /^\+OK /);
  });

  it('one address guessing many accounts is refused for every account; other addresses are not', async () => {
    const sprayer = '203.0.113.99';
    for (let i = 0; i < 6; i++) {
      const user = i % 2 === 0 ? 'bob' : `nobody${i}`;
      assert.match((await attempt(srv.pop3Port, sprayer, user, 'Winter2026!')).reply, /^-ERR \[AUTH\] /);
    }
    const logged = srv.waitForLog((r) => r.msg === 'login failed' && String(r.reason).startsWith('throttled (ip)'));
    assert.match((await attempt(srv.pop3Port, sprayer, 'carol', USERS.carol)).reply, /^-ERR \[AUTH\] /);
    await logged;
    assert.match((await attempt(srv.pop3Port, '198.51.100.77', 'carol', USERS.carol)).reply, /^\+OK /);
    // bob's three failures came from the sprayer; bob from a new address is refused until the
    // window passes, which is the account limit doing its job.
    assert.match((await attempt(srv.pop3Port, '198.51.100.78', 'bob', USERS.bob)).reply, /^-ERR \[AUTH\] /);
    const text = await srv.server.metrics.text();
    assert.ok(metric(text, 'postern_auth_throttled_total', '{reason="ip"}') >= 1);
    assert.match(text, /postern_auth_attempts_total\{[^}]*result="throttled"\} \d/);
  });

  it('no password in the logs', () => {
    assertNoSecretsInLogs(srv.logs, [...Object.values(USERS), 'guess-0', 'Winter2026!']);
  });
});

describe('login throttle across two worker processes (WORKERS=2)', () => {
  const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
  let dataDir: string;
  let proc: ManagedProcess;
  let port: number;
  const records: Record<string, unknown>[] = [];
  /** A log line to await after the action that causes it (no unhandled rejection if the test fails first). */
  const expectLine = (match: (line: string) => boolean): Promise<string> => {
    const line = proc.waitForLine(match);
    line.catch(() => undefined);
    return line;
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'postern-throttle-'));
    await writeFile(join(dataDir, 'passwd'), `alice:{PLAIN}${USERS.alice}\n`, { mode: 0o600 });
    const tls = await sharedTls();
    port = await freePort();
    proc = ManagedProcess.create({
      name: 'postern (WORKERS=2)',
      program: process.execPath,
      args: ['--conditions=development', '--import', 'tsx', join(ROOT, 'services/server/src/main.ts')],
      cwd: ROOT,
      port,
      env: {
        ...LIMITS,
        AUTH_THROTTLE_MAX_DELAY_MS: '100',
        WORKERS: '2',
        DATA_DIR: dataDir,
        POP3_LISTEN: `127.0.0.1:${port}`,
        POP3S_LISTEN: 'off',
        LMTP_LISTEN: `127.0.0.1:${await freePort()}`,
        ADMIN_LISTEN: `127.0.0.1:${await freePort()}`,
        TLS_CERT: tls.cert,
        TLS_KEY: tls.key,
        AUTH_FAILURE_DELAY_MS: '0',
        LOG_LEVEL: 'info',
      },
    });
    proc.onLine((line) => {
      if (!line.startsWith('{')) return;
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log record
      }
    });
    await proc.start();
    // The port accepts once one worker listens; wait for the second too.
    await pollUntil('both workers listening', 30_000, async () =>
      new Set(records.filter((r) => r.msg === 'POP3 listening').map((r) => r.worker)).size === 2 ? true : undefined,
    );
  });
  after(async () => {
    await proc?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('failures served by different workers add up to one account counter', async () => {
    const workersOf = (ip: string) =>
      new Set(records.filter((r) => r.msg === 'login failed' && r.ip === ip).map((r) => r.worker));
    const attacker = '203.0.113.5';
    for (let i = 0; i < 3; i++) {
      const logged = expectLine((l) => l.includes('"login failed"') && l.includes(attacker));
      assert.match((await attempt(port, attacker, 'alice', `wrong-${i}`)).reply, /^-ERR \[AUTH\] /);
      await logged;
    }
    // Connections are shared round-robin: both workers saw some of the three failures, so
    // neither alone reached the limit of 3.
    assert.equal(workersOf(attacker).size, 2, 'both workers served failures');
    // The next attempt, on either worker, is refused, even with the right password.
    for (let i = 0; i < 2; i++) {
      const logged = expectLine((l) => l.includes('throttled (user)'));
      assert.match((await attempt(port, attacker, 'alice', USERS.alice)).reply, /^-ERR \[AUTH\] /);
      await logged;
    }
    const refusedBy = new Set(
      records.filter((r) => r.msg === 'login failed' && String(r.reason).startsWith('throttled (user)')).map((r) => r.worker),
    );
    assert.equal(refusedBy.size, 2, 'both workers refused');
    assert.match((await attempt(port, '198.51.100.9', 'alice', USERS.alice)).reply, /^-ERR \[AUTH\] /);
  });
});

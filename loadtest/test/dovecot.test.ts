// Integration: a private Dovecot on generated data, the client against it, and a short load run.
// Needs dovecot-core and dovecot-pop3d (infra/bin/install-test-deps.sh installs them).

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDovecot, type DovecotInstance } from '../src/dovecot.js';
import { runIdle, runSessions, type Account, type SessionRecord } from '../src/generator.js';
import { generateMail, type MailgenResult } from '../src/mailgen.js';
import { Pop3Client, Pop3Error } from '../src/pop3-client.js';
import { processTree } from '../src/procstat.js';

const USERS = 8;
const MESSAGES = 6;

/** The messages of a user as Dovecot serves them: CRLF line ends, keyed by W= size then content. */
function expectedMessages(root: string, user: string): Buffer[] {
  const out: Buffer[] = [];
  for (const sub of ['new', 'cur']) {
    const dir = join(root, user, 'Maildir', sub);
    for (const f of readdirSync(dir)) {
      out.push(Buffer.from(readFileSync(join(dir, f), 'latin1').replace(/\n/g, '\r\n'), 'latin1'));
    }
  }
  return out.sort(Buffer.compare);
}

describe('against a private Dovecot', { timeout: 120_000 }, () => {
  let scratch: string;
  let mail: MailgenResult;
  let dc: DovecotInstance;
  let accounts: Account[];
  let ca: Buffer;

  before(async () => {
    scratch = mkdtempSync(join(os.tmpdir(), 'postern-dovecot-test-'));
    chmodSync(scratch, 0o755);
    mail = generateMail({
      root: join(scratch, 'mail'),
      users: USERS,
      messages: MESSAGES,
      // Small messages and one range large enough to cross many TCP segments.
      sizes: '300-3k:4,60k-200k:1',
      seed: 42,
    });
    accounts = mail.users.map((u) => ({ user: u.user, password: u.password }));
    dc = await startDovecot({ mailRoot: mail.root, passwdFile: mail.passwdFile, tls: true, maxSessions: 64 });
    ca = readFileSync(dc.caFile as string);
  });

  after(async () => {
    const tree = dc === undefined ? [] : processTree(dc.pid);
    await dc?.stop();
    const alive = tree.filter((pid) => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('dovecot'));
    assert.deepEqual(alive, [], 'no Dovecot process is left');
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  });

  const connect = (opts: Partial<Parameters<typeof Pop3Client.connect>[0]> = {}) =>
    Pop3Client.connect({ host: '127.0.0.1', port: dc.port, timeoutMs: 10_000, ...opts });

  it('advertises what the client relies on', async () => {
    const c = await connect();
    const caps = await c.capa();
    for (const cap of ['TOP', 'UIDL', 'USER', 'PIPELINING', 'RESP-CODES', 'STLS']) assert.ok(caps.has(cap), cap);
    assert.deepEqual(caps.get('SASL'), ['PLAIN', 'LOGIN']);
    await c.quit();
  });

  it('serves every message byte for byte, dot-stuffing undone', async () => {
    const user = mail.users[0]!;
    const c = await connect();
    await c.login(user.user, user.password);
    const stat = await c.stat();
    assert.deepEqual(stat, { count: MESSAGES, size: user.crlfOctets });
    const list = await c.list();
    assert.equal(list.reduce((a, e) => a + e.size, 0), user.crlfOctets);
    const uidl = await c.uidl();
    assert.equal(new Set(uidl.map((u) => u.uid)).size, MESSAGES);
    const got: Buffer[] = [];
    for (const { msg, size } of list) {
      const r = await c.retr(msg, { keepBody: true });
      assert.equal(r.octets, size, `RETR ${msg} octets = LIST size`);
      got.push(r.body!);
    }
    assert.deepEqual(got.sort(Buffer.compare), expectedMessages(mail.root, user.user));
    // TOP n 0: the header and the blank line.
    const top = await c.top(1, 0);
    const full = (await c.retr(1, { keepBody: true })).body!.toString('latin1');
    assert.equal(top.body!.toString('latin1'), full.slice(0, full.indexOf('\r\n\r\n') + 4));
    await c.quit();
  });

  it('pipelines a mailbox fetch', async () => {
    const user = mail.users[1]!;
    const c = await connect({ pipelining: true });
    await c.login(user.user, user.password);
    const [stat, ...retrs] = await Promise.all([c.stat(), ...Array.from({ length: MESSAGES }, (_, i) => c.retr(i + 1))]);
    assert.equal(retrs.reduce((a, r) => a + r.octets, 0), stat.size);
    assert.equal(stat.size, user.crlfOctets);
    await c.quit();
  });

  it('AUTH PLAIN, with and without an initial response', async () => {
    const user = mail.users[2]!;
    for (const initialResponse of [true, false]) {
      const c = await connect();
      await c.authPlain(user.user, user.password, { initialResponse });
      assert.equal((await c.stat()).count, MESSAGES);
      await c.quit();
    }
  });

  it('refuses a second session with [IN-USE]', async () => {
    // Dovecot lets the second session wait up to 10 s for the lock before it answers [IN-USE].
    const user = mail.users[6]!;
    const first = await connect();
    await first.login(user.user, user.password);
    const second = await connect({ timeoutMs: 30_000 });
    await assert.rejects(second.login(user.user, user.password), (e: unknown) => {
      assert.ok(e instanceof Pop3Error, String(e));
      assert.equal(e.reply?.respCode, 'IN-USE');
      assert.equal(e.temporary, true);
      return true;
    });
    second.destroy();
    await first.quit();
  });

  it('verifies the certificate over implicit TLS and over STLS', async () => {
    const user = mail.users[4]!;
    const implicit = await Pop3Client.connect({ host: '127.0.0.1', port: dc.tlsPort!, tls: { ca }, timeoutMs: 10_000 });
    assert.ok(implicit.secure);
    await implicit.login(user.user, user.password);
    assert.equal((await implicit.stat()).size, user.crlfOctets);
    await implicit.quit();

    const upgraded = await connect({ starttls: { ca } });
    assert.ok(upgraded.secure);
    const caps = await upgraded.capa();
    assert.ok(!caps.has('STLS'), 'no STLS once secure');
    await upgraded.login(user.user, user.password);
    const r = await upgraded.retr(1, { keepBody: true });
    assert.ok(r.body!.toString('latin1').startsWith('Return-Path:'));
    await upgraded.quit();

    await assert.rejects(
      Pop3Client.connect({ host: '127.0.0.1', port: dc.tlsPort!, tls: {}, timeoutMs: 10_000 }),
      (e: unknown) => e instanceof Pop3Error && e.code === 'connect',
      'an unknown CA is refused',
    );
  });

  it('runs 20 load sessions without an error and with the right byte counts', async () => {
    const records: SessionRecord[] = [];
    // The first six accounts; the last two are for the lock and DELE tests.
    const result = await runSessions({
      host: '127.0.0.1',
      port: dc.port,
      accounts: accounts.slice(0, 6),
      concurrency: 3,
      sessions: 20,
      serverPid: dc.pid,
      onSession: (r) => records.push(r),
    });
    assert.deepEqual(result.errors, {});
    assert.equal(result.sessionsOk, 20);
    assert.equal(records.length, 20);
    const byUser = new Map(mail.users.map((u) => [u.user, u]));
    let expected = 0;
    for (const r of records) {
      const u = byUser.get(r.user)!;
      assert.equal(r.messages, MESSAGES);
      assert.equal(r.retrOctets, u.crlfOctets, `bytes fetched for ${r.user} = sum of its W= sizes`);
      expected += u.crlfOctets;
    }
    assert.equal(result.retrOctets, expected);
    assert.equal(result.messagesRetrieved, 20 * MESSAGES);
    assert.ok(result.sessionLatencyMs.count === 20 && result.sessionLatencyMs.p50 > 0);
    assert.ok(result.server !== null && result.server.cpuSeconds > 0 && result.server.memoryAfter.processes > 1);
  });

  it('holds idle sessions and measures the process tree', async () => {
    const result = await runIdle({
      host: '127.0.0.1',
      port: dc.port,
      accounts: accounts.slice(0, 6),
      idle: 6,
      concurrency: 3,
      serverPid: dc.pid,
    });
    assert.deepEqual(result.errors, {});
    assert.equal(result.held, 6);
    assert.ok(result.memoryAfter!.processes >= 6 + 1, 'a pop3 process per session plus the master');
    assert.ok(result.memoryAfter!.rssBytes > 0 && result.rssPerSession !== null);
  });

  it('DELE is applied at QUIT and only then', async () => {
    const user = mail.users[7]!;
    const a = await connect();
    await a.login(user.user, user.password);
    await a.dele(1);
    await a.dele(2);
    assert.equal((await a.stat()).count, MESSAGES - 2);
    await a.rset();
    assert.equal((await a.stat()).count, MESSAGES);
    await a.dele(1);
    a.destroy(); // dropped connection: nothing is deleted
    // Dovecot releases the session lock when that process notices the drop: retry while IN-USE.
    let b: Pop3Client;
    for (;;) {
      b = await connect();
      try {
        await b.login(user.user, user.password);
        break;
      } catch (e) {
        b.destroy();
        if (!(e instanceof Pop3Error && e.reply?.respCode === 'IN-USE')) throw e;
      }
    }
    assert.equal((await b.stat()).count, MESSAGES);
    await b.dele(1);
    await b.quit();
    const c = await connect();
    await c.login(user.user, user.password);
    assert.equal((await c.stat()).count, MESSAGES - 1);
    await c.quit();
  });

  // Last: a failed login makes Dovecot delay later logins from the same address.
  it('refuses a wrong password with [AUTH]', async () => {
    const user = mail.users[6]!;
    const bad = await connect();
    await assert.rejects(bad.login(user.user, 'not-the-password'), (e: unknown) => {
      assert.ok(e instanceof Pop3Error);
      assert.equal(e.reply?.respCode, 'AUTH');
      assert.equal(e.temporary, false);
      return true;
    });
    bad.destroy();
  });
});

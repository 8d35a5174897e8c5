// The POP3 logic of the k6 script (loadtest/k6/pop3-protocol.js, plain JS without k6 imports):
// reply parsing and dot-unstuffing split at every byte, then whole sessions against a real
// single-node server over node:net, through the same transport shape k6/x/tcp is adapted to.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ManagedProcess, freePort } from '@postern/testkit';
import {
  BodyDecoder,
  Pop3Conversation,
  Pop3ProtocolError,
  ReplyReader,
  isMultiline,
  parseAccounts,
  parseStatusLine,
  runSession,
  type Pop3Transport,
} from '../k6/pop3-protocol.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const text = (b: Uint8Array | null): string => Buffer.from(b ?? new Uint8Array()).toString('latin1');

describe('pop3-protocol.js, pure', () => {
  test('multi-line commands: CAPA, LIST/UIDL without argument, RETR, TOP', () => {
    for (const c of ['CAPA', 'LIST', 'uidl', 'RETR 1', 'TOP 2 0', ' list ']) assert.equal(isMultiline(c), true, c);
    for (const c of ['LIST 1', 'UIDL 3', 'STAT', 'USER a', 'PASS b', 'DELE 1', 'QUIT', 'NOOP', 'STLS']) assert.equal(isMultiline(c), false, c);
  });

  test('status lines with and without RFC 2449 response codes', () => {
    assert.deepEqual(parseStatusLine('+OK 2 320'), { ok: true, code: null, text: '2 320' });
    assert.deepEqual(parseStatusLine('-ERR [IN-USE] maildrop busy'), { ok: false, code: 'IN-USE', text: 'maildrop busy' });
    assert.deepEqual(parseStatusLine('-ERR [SYS/TEMP] try later'), { ok: false, code: 'SYS/TEMP', text: 'try later' });
    assert.deepEqual(parseStatusLine('+OK'), { ok: true, code: null, text: '' });
    assert.throws(() => parseStatusLine('* OK imap'), Pop3ProtocolError);
    assert.throws(() => parseStatusLine('+OKAY'), /not followed by a space/);
  });

  const stuffed = 'Subject: x\r\n\r\n..leading dot\r\n..\r\n.\rnot the end\r\nbare\nLF\r\n...\r\nlast\r\n.\r\n';
  const decoded = 'Subject: x\r\n\r\n.leading dot\r\n.\r\n\rnot the end\r\nbare\nLF\r\n..\r\nlast\r\n';

  test('a body is unstuffed and ends at CRLF.CRLF, split at every byte', () => {
    const wire = bytes(stuffed + '+OK next');
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new BodyDecoder(true);
      let end = d.push(wire.subarray(0, cut));
      if (end === -1) end = cut + d.push(wire.subarray(cut));
      assert.equal(end, stuffed.length, `cut at ${cut}`);
      assert.equal(text(d.body()), decoded, `cut at ${cut}`);
      assert.equal(d.octets, decoded.length);
    }
  });

  test('replies in order: one-line, multi-line +OK, multi-line -ERR, fed one byte at a time', () => {
    const wire = bytes(`+OK ready\r\n+OK 1 message\r\n${stuffed}-ERR [AUTH] no\r\n`);
    const reader = new ReplyReader();
    reader.expect(false, false);
    reader.expect(true, true);
    reader.expect(true, true);
    const replies = [];
    for (let i = 0; i < wire.length; i++) replies.push(...reader.push(wire.subarray(i, i + 1)));
    assert.equal(replies.length, 3);
    assert.equal(replies[0]?.text, 'ready');
    assert.equal(text(replies[1]?.body ?? null), decoded);
    assert.equal(replies[1]?.octets, decoded.length);
    assert.deepEqual([replies[2]?.ok, replies[2]?.code, replies[2]?.body], [false, 'AUTH', null]);
    assert.equal(reader.awaiting, 0);
    assert.throws(() => reader.push(bytes('+OK unasked\r\n')), /unsolicited/);
  });

  test('a status line must end in CRLF and stay under the limit', () => {
    const r = new ReplyReader();
    r.expect(false, false);
    assert.throws(() => r.push(bytes('+OK lf only\n')), /CRLF/);
    const long = new ReplyReader();
    long.expect(false, false);
    assert.throws(() => long.push(bytes(`+OK ${'x'.repeat(9000)}`)), /longer than/);
  });

  test('accounts: user:password lines and {PLAIN} passwd-file lines', () => {
    assert.deepEqual(parseAccounts('# c\nuser1:pw1\r\n\nuser2:{PLAIN}pw2::::\n'), [
      { user: 'user1', password: 'pw1' },
      { user: 'user2', password: 'pw2' },
    ]);
    assert.throws(() => parseAccounts('nopassword\n'), /user:password/);
  });
});

/** node:net as the transport shape the k6 script builds from k6/x/tcp's events. */
function netTransport(host: string, port: number): Promise<{ transport: Pop3Transport; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Uint8Array[] = [];
    let waiter: ((v: Uint8Array | null) => void) | null = null;
    let closed = false;
    socket.on('data', (d: Buffer) => {
      chunks.push(new Uint8Array(d));
      if (waiter) {
        const w = waiter;
        waiter = null;
        w(chunks.shift() ?? null);
      }
    });
    socket.on('close', () => {
      closed = true;
      if (waiter) {
        const w = waiter;
        waiter = null;
        w(null);
      }
    });
    socket.once('error', reject);
    socket.once('connect', () =>
      resolve({
        socket,
        transport: {
          write: (t) => new Promise<void>((ok, fail) => socket.write(t, (e) => (e ? fail(e) : ok()))),
          read: () => {
            if (chunks.length > 0) return Promise.resolve(chunks.shift() ?? null);
            if (closed) return Promise.resolve(null);
            return new Promise((r) => (waiter = r));
          },
        },
      }),
    );
  });
}

describe('pop3-protocol.js against the single node', () => {
  let dir: string;
  let server: ManagedProcess;
  let port: number;
  // CRLF files: what RETR sends back, unstuffed, must be these bytes.
  const messages = [
    'From: a@example.com\r\nSubject: one\r\n\r\nhello\r\n',
    'From: b@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.starts with a dot\r\nmiddle . dot\r\n.\r\nend\r\n',
    `From: c@example.com\r\nSubject: big\r\n\r\n${'.line of a larger body with a leading dot\r\n'.repeat(3000)}`,
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postern-k6-'));
    await writeFile(join(dir, 'passwd'), 'alice:{PLAIN}alice-secret\nbob:{PLAIN}bob-secret\n', { mode: 0o600 });
    for (const user of ['alice', 'bob']) {
      const md = join(dir, 'mail', user, 'Maildir');
      for (const sub of ['new', 'cur', 'tmp']) await mkdir(join(md, sub), { recursive: true });
      for (const [i, m] of messages.entries()) await writeFile(join(md, 'new', `${1_700_000_000 + i}.M${i}P1.k6test`), m);
    }
    port = await freePort();
    server = await ManagedProcess.start({
      name: 'postern-k6',
      program: process.execPath,
      args: ['--conditions=development', '--import', 'tsx', join(ROOT, 'services/server/src/main.ts')],
      cwd: ROOT,
      port,
      readyTimeoutMs: 60_000,
      env: {
        DATA_DIR: dir,
        POP3_LISTEN: `127.0.0.1:${port}`,
        POP3S_LISTEN: 'off',
        LMTP_LISTEN: 'off',
        ADMIN_LISTEN: 'off',
        WORKERS: '1',
        AUTH_FAILURE_DELAY_MS: '0',
        LOG_LEVEL: 'warn',
      },
    });
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a whole session: CAPA, login, STAT, LIST, UIDL, RETR byte-exact, QUIT and close', async () => {
    const { transport } = await netTransport('127.0.0.1', port);
    const r = await runSession(transport, { user: 'alice', password: 'alice-secret', capa: true, keepBodies: true });
    assert.ok(r.capabilities?.includes('UIDL') && r.capabilities.includes('USER'), String(r.capabilities));
    assert.deepEqual(r.stat, { count: 3, size: messages.reduce((n, m) => n + m.length, 0) });
    assert.deepEqual(r.list.map((e) => e.size), messages.map((m) => m.length));
    assert.equal(new Set(r.uidl.map((u) => u.uid)).size, 3);
    assert.deepEqual(r.retrieved.map((m) => text(m.body)).sort(), [...messages].sort());
    assert.equal(r.octets, r.stat.size);
    assert.ok(r.sessionMs >= r.loginMs && r.loginMs >= 0);
  });

  test('a wrong password fails at login with [AUTH]', async () => {
    const { transport } = await netTransport('127.0.0.1', port);
    await assert.rejects(runSession(transport, { user: 'alice', password: 'wrong' }), (e: Pop3ProtocolError) => {
      assert.equal(e.stage, 'login');
      assert.equal(e.reply?.code, 'AUTH');
      return true;
    });
  });

  test('a second session on a busy maildrop fails with [IN-USE]', async () => {
    const first = await netTransport('127.0.0.1', port);
    const held = new Pop3Conversation(first.transport);
    assert.equal((await held.greeting()).ok, true);
    assert.equal((await held.command('USER bob')).ok, true);
    assert.equal((await held.command('PASS bob-secret')).ok, true);
    const { transport } = await netTransport('127.0.0.1', port);
    await assert.rejects(runSession(transport, { user: 'bob', password: 'bob-secret' }), (e: Pop3ProtocolError) => {
      assert.equal(e.stage, 'login');
      assert.equal(e.reply?.code, 'IN-USE');
      return true;
    });
    assert.equal((await held.command('QUIT')).ok, true);
    await held.waitClosed();
  });

  test('RETR of the first message with DELE removes it at QUIT', async () => {
    const one = await netTransport('127.0.0.1', port);
    const r = await runSession(one.transport, { user: 'bob', password: 'bob-secret', retr: 1, dele: true });
    assert.equal(r.retrieved.length, 1);
    const two = await netTransport('127.0.0.1', port);
    const after = await runSession(two.transport, { user: 'bob', password: 'bob-secret', retr: 'none' });
    assert.equal(after.stat.count, 2);
    assert.equal(after.retrieved.length, 0);
    assert.ok(!after.uidl.some((u) => u.uid === r.uidl[0]?.uid), 'the deleted message is gone from UIDL');
  });
});

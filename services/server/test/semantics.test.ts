// POP3 semantics end to end (RFC 1939 and the invariants in ARCHITECTURE.md): what DELE, RSET,
// QUIT and a dropped connection do to the Maildir on disk; one session per maildrop; UIDLs that
// survive sessions and restarts; a session's snapshot; pipelined sessions.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lmtpSend } from './support/lmtp-client.js';
import { uidsOnDisk } from './support/maildir.js';
import { address, dotsMessage, eightBitMessage, simpleMessage, type TestMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const USERS: Record<string, string> = {};
for (const u of ['deleter', 'resetter', 'dropper', 'shared', 'stable', 'snapshot', 'numbers', 'bulk', 'pipe', 'repeat']) USERS[u] = `${u}-pw-${u.length}`;
const pw = (user: string): string => USERS[user] as string;

/** Delivers to one user and returns the UIDs the 250 replies named, in order. */
async function deliver(srv: TestServer, user: string, messages: readonly TestMessage[]): Promise<string[]> {
  const uids: string[] = [];
  for (const m of messages) {
    const r = await lmtpSend(srv.lmtpPort, 'sender@example.com', [address(user)], m.delivered);
    assert.equal(r.data[0]?.code, 250, JSON.stringify(r));
    const uid = / as (\S+)$/.exec(r.data[0]?.text ?? '')?.[1];
    assert.ok(uid, `the 250 reply names the UID: ${r.data[0]?.text}`);
    uids.push(uid);
  }
  return uids;
}

async function session(srv: TestServer, user: string): Promise<Pop3Client> {
  const c = await Pop3Client.connect(srv.pop3Port);
  await c.login(user, pw(user));
  return c;
}

async function uidl(srv: TestServer, user: string): Promise<string[]> {
  const c = await session(srv, user);
  const lines = await c.listing('UIDL');
  assert.match(await c.quit(), /^\+OK /);
  return lines;
}

/** The server has finished with the session of this client connection (lock released). */
function sessionEnded(srv: TestServer, client: Pop3Client, user: string): Promise<unknown> {
  const port = client.localPort;
  return srv.waitForLog((r) => r.msg === 'session end' && r.port === port && r.user === user);
}

describe('POP3 semantics', () => {
  let srv: TestServer;
  /** Log lines of server instances replaced by a restart. */
  const retiredLogs: string[] = [];

  before(async () => {
    // A failed login waits AUTH_FAILURE_DELAY_MS; IN-USE must not.
    srv = await startTestServer({ users: USERS, env: { AUTH_FAILURE_DELAY_MS: '3000' } });
  });
  after(async () => {
    await srv?.stop();
  });

  it('DELE then QUIT removes exactly the deleted messages from the Maildir', async () => {
    const uids = await deliver(srv, 'deleter', [simpleMessage('d1'), simpleMessage('d2'), simpleMessage('d3'), simpleMessage('d4')]);
    assert.deepEqual(await uidsOnDisk(srv.maildir('deleter')), [...uids].sort());
    const c = await session(srv, 'deleter');
    assert.match(await c.command('DELE 1'), /^\+OK /);
    assert.match(await c.command('DELE 3'), /^\+OK /);
    // Deleted messages are skipped, not renumbered.
    assert.equal(await c.command('STAT'), `+OK 2 ${(await sizes(c, [2, 4])).reduce((a, b) => a + b, 0)}`);
    assert.deepEqual(await c.listing('UIDL'), [`2 ${uids[1]}`, `4 ${uids[3]}`]);
    assert.match(await c.command('RETR 1'), /^-ERR /);
    assert.match(await c.command('DELE 3'), /^-ERR /);
    assert.equal(await c.quit(), '+OK Postern signing off (2 messages left).');
    assert.deepEqual(await uidsOnDisk(srv.maildir('deleter')), [uids[1], uids[3]].sort());
    assert.deepEqual(await uidl(srv, 'deleter'), [`1 ${uids[1]}`, `2 ${uids[3]}`]);
  });

  it('DELE then RSET then QUIT removes nothing', async () => {
    const uids = await deliver(srv, 'resetter', [simpleMessage('r1'), simpleMessage('r2')]);
    const c = await session(srv, 'resetter');
    const stat = await c.command('STAT');
    assert.match(await c.command('DELE 1'), /^\+OK /);
    assert.match(await c.command('DELE 2'), /^\+OK /);
    assert.equal(await c.command('STAT'), '+OK 0 0');
    assert.match(await c.command('RSET'), /^\+OK /);
    assert.equal(await c.command('STAT'), stat);
    assert.equal(await c.quit(), '+OK Postern signing off (2 messages left).');
    assert.deepEqual(await uidsOnDisk(srv.maildir('resetter')), [...uids].sort());
  });

  it('DELE then a dropped connection (no QUIT) removes nothing', async () => {
    const uids = await deliver(srv, 'dropper', [simpleMessage('x1'), simpleMessage('x2')]);
    const c = await session(srv, 'dropper');
    assert.match(await c.command('DELE 1'), /^\+OK /);
    assert.match(await c.command('DELE 2'), /^\+OK /);
    const ended = sessionEnded(srv, c, 'dropper');
    c.destroy();
    await ended;
    assert.deepEqual(await uidsOnDisk(srv.maildir('dropper')), [...uids].sort());
    assert.deepEqual(await uidl(srv, 'dropper'), [`1 ${uids[0]}`, `2 ${uids[1]}`]);
  });

  it('a second login to a locked maildrop gets -ERR [IN-USE] at once; the first session goes on; after its QUIT the second can log in', async () => {
    await deliver(srv, 'shared', [simpleMessage('s1')]);
    const first = await session(srv, 'shared');
    const second = await Pop3Client.connect(srv.pop3Port);
    assert.match(await second.command('USER shared'), /^\+OK /);
    const started = Date.now();
    const refused = await second.command(`PASS ${pw('shared')}`);
    const elapsed = Date.now() - started;
    assert.match(refused, /^-ERR \[IN-USE\] /);
    assert.ok(elapsed < 1500, `IN-USE took ${elapsed} ms; a failed-login delay (3000 ms here) must not apply`);
    // AUTH PLAIN is refused the same way.
    const plain = Buffer.from(`\0shared\0${pw('shared')}`).toString('base64');
    assert.match(await second.command(`AUTH PLAIN ${plain}`), /^-ERR \[IN-USE\] /);
    // The first session is unaffected.
    assert.match(await first.command('STAT'), /^\+OK 1 \d+$/);
    const r = await first.multi('RETR 1');
    assert.match(r.status, /^\+OK /);
    assert.match(await first.command('DELE 1'), /^\+OK /);
    assert.equal(await first.quit(), '+OK Postern signing off (0 messages left).');
    // The lock is released before QUIT answers +OK: the waiting connection logs in now.
    assert.match(await second.login('shared', pw('shared')), /^\+OK Logged in, 0 messages/);
    assert.equal(await second.command('STAT'), '+OK 0 0');
    await second.quit();
  });

  it('UIDLs stay the same across sessions and across a server restart on the same DATA_DIR', async () => {
    const uids = await deliver(srv, 'stable', [simpleMessage('u1'), simpleMessage('u2'), simpleMessage('u3')]);
    const expected = uids.map((u, i) => `${i + 1} ${u}`);
    assert.deepEqual(await uidl(srv, 'stable'), expected);
    assert.deepEqual(await uidl(srv, 'stable'), expected);
    for (const u of uids) assert.match(u, /^[\x21-\x7e]{1,70}$/, 'UIDL is 1..70 printable characters');
    assert.equal(new Set(uids).size, uids.length);
    retiredLogs.push(...srv.logs);
    srv = await srv.restart();
    assert.deepEqual(await uidl(srv, 'stable'), expected);
    // Deleting one keeps the others' UIDLs (numbers change between sessions, UIDLs never).
    const c = await session(srv, 'stable');
    assert.match(await c.command('DELE 2'), /^\+OK /);
    await c.quit();
    assert.deepEqual(await uidl(srv, 'stable'), [`1 ${uids[0]}`, `2 ${uids[2]}`]);
    // A later delivery gets a new UIDL, never one of a deleted message.
    const [next] = await deliver(srv, 'stable', [simpleMessage('u4')]);
    assert.ok(next && !uids.includes(next));
    assert.deepEqual(await uidl(srv, 'stable'), [`1 ${uids[0]}`, `2 ${uids[2]}`, `3 ${next}`]);
  });

  it('a message delivered during an open session appears only in the next session', async () => {
    const [firstUid] = await deliver(srv, 'snapshot', [simpleMessage('n1')]);
    const c = await session(srv, 'snapshot');
    const stat = await c.command('STAT');
    assert.match(stat, /^\+OK 1 \d+$/);
    // Delivery is not blocked by the open session.
    const [laterUid] = await deliver(srv, 'snapshot', [simpleMessage('n2')]);
    assert.equal((await uidsOnDisk(srv.maildir('snapshot'))).length, 2);
    assert.equal(await c.command('STAT'), stat);
    assert.deepEqual(await c.listing('UIDL'), [`1 ${firstUid}`]);
    assert.equal((await c.listing('LIST')).length, 1);
    assert.match(await c.command('RETR 2'), /^-ERR /);
    assert.match(await c.command('RSET'), /^\+OK Maildrop has 1 messages/);
    assert.equal(await c.quit(), '+OK Postern signing off (1 messages left).');
    assert.deepEqual(await uidl(srv, 'snapshot'), [`1 ${firstUid}`, `2 ${laterUid}`]);
  });

  it('message numbers are digits only, 1..n, for every command; TOP counts body lines from the blank line', async () => {
    const m = dotsMessage();
    await deliver(srv, 'numbers', [m, simpleMessage('second')]);
    const c = await session(srv, 'numbers');
    for (const bad of ['0', '3', '+1', '-1', '1x', '01x', '1.0', '0x1', '99999999999999999999999']) {
      for (const cmd of ['RETR', 'LIST', 'UIDL', 'DELE']) {
        const reply = await c.command(`${cmd} ${bad}`);
        assert.match(reply, /^-ERR /, `${cmd} ${JSON.stringify(bad)}: ${reply}`);
      }
      assert.match(await c.command(`TOP ${bad} 0`), /^-ERR /, `TOP ${JSON.stringify(bad)} 0`);
    }
    assert.equal(await c.command('STAT'), `+OK 2 ${m.canonical.length + simpleMessage('second').canonical.length}`);
    assert.equal(await c.command('LIST 01'), `+OK 1 ${m.canonical.length}`);
    const headerEnd = m.canonical.indexOf('\r\n\r\n') + 4;
    const bodyLines = m.canonical.subarray(headerEnd).toString('latin1').split('\r\n').length - 1;
    for (const n of [0, 1, 3, bodyLines, bodyLines + 1, 1000]) {
      const top = await c.multi(`TOP 1 ${n}`);
      let end = headerEnd;
      for (let i = 0; i < Math.min(n, bodyLines); i++) end = m.canonical.indexOf('\r\n', end) + 2;
      assert.ok(top.body.equals(m.canonical.subarray(0, end)), `TOP 1 ${n}`);
    }
    assert.match(await c.command('TOP 1 x'), /^-ERR /);
    assert.match(await c.command('TOP 1 -1'), /^-ERR /);
    assert.match(await c.command('DELE 1'), /^\+OK /);
    for (const cmd of ['RETR 1', 'LIST 1', 'UIDL 1', 'TOP 1 0', 'DELE 1']) {
      assert.equal(await c.command(cmd), '-ERR Message 1 already deleted.', cmd);
    }
    // Message 2 keeps its number.
    assert.match(await c.command('LIST 2'), /^\+OK 2 \d+$/);
    await c.command('RSET');
    await c.quit();
  });

  it('a maildrop of 2000 messages put in the Maildir by another agent: STAT, LIST, UIDL (20 KB and more each) and RETR complete', { timeout: 30_000 }, async () => {
    // As Postfix or Dovecot would leave them: LF line ends, no size hints, some seen ones in cur/.
    const root = srv.maildir('bulk');
    for (const sub of ['new', 'cur', 'tmp']) await mkdir(join(root, sub), { recursive: true });
    const count = 2000;
    const bases: string[] = [];
    const texts: string[] = [];
    const writes: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const base = `${1_700_000_000 + i}.M${100_000 + i}P4242.mta.example`;
      const text = `From: sender@example.com\nSubject: bulk ${i}\n\n${i % 7 === 0 ? '.' : ''}line ${i}\n`;
      bases.push(base);
      texts.push(text);
      const name = i % 10 === 0 ? join('cur', `${base}:2,S`) : join('new', base);
      writes.push(writeFile(join(root, name), text));
      if (writes.length === 100) await Promise.all(writes.splice(0));
    }
    await Promise.all(writes);
    const canonical = texts.map((t) => Buffer.from(t.replaceAll('\n', '\r\n'), 'latin1'));
    const c = await session(srv, 'bulk');
    try {
      const total = canonical.reduce((n, b) => n + b.length, 0);
      assert.equal(await c.command('STAT'), `+OK ${count} ${total}`);
      // Pipelined: both listings are larger than a socket's write buffer.
      c.write('LIST\r\nUIDL\r\n');
      const list = await c.readMulti();
      const uidl = await c.readMulti();
      assert.equal(list.body.toString('latin1'), canonical.map((b, i) => `${i + 1} ${b.length}\r\n`).join(''));
      assert.equal(uidl.body.toString('latin1'), bases.map((b, i) => `${i + 1} ${b}\r\n`).join(''));
      for (const n of [1, 2, 1234, count]) {
        assert.ok((await c.multi(`RETR ${n}`)).body.equals(canonical[n - 1] as Buffer), `RETR ${n}`);
      }
      assert.equal(await c.quit(), `+OK Postern signing off (${count} messages left).`);
    } finally {
      // On a timeout, end the stuck session so the server can stop.
      c.destroy();
    }
  });

  describe('pipelining', () => {
    let messages: TestMessage[];
    let uids: string[];
    const script = ['USER pipe', `PASS ${pw('pipe')}`, 'STAT', 'LIST', 'UIDL', 'RETR 1', 'RETR 2', 'TOP 1 0', 'QUIT']
      .map((l) => `${l}\r\n`)
      .join('');

    before(async () => {
      messages = [dotsMessage(), eightBitMessage()];
      uids = await deliver(srv, 'pipe', messages);
    });

    /** The exact transcript the script must produce (the greeting's APOP timestamp varies). */
    function expectedTranscript(): Buffer {
      const stuff = (b: Buffer): Buffer => {
        const lines = b.toString('latin1').split('\r\n').slice(0, -1);
        return Buffer.from(lines.map((l) => `${l.startsWith('.') ? '.' : ''}${l}\r\n`).join(''), 'latin1');
      };
      const [m1, m2] = messages as [TestMessage, TestMessage];
      const total = m1.canonical.length + m2.canonical.length;
      const headerEnd = m1.canonical.indexOf('\r\n\r\n') + 4;
      return Buffer.concat([
        Buffer.from(
          [
            '+OK Postern ready. <TIMESTAMP>',
            '+OK Send your password.',
            `+OK Logged in, 2 messages (${total} octets).`,
            `+OK 2 ${total}`,
            `+OK 2 messages (${total} octets)`,
            `1 ${m1.canonical.length}`,
            `2 ${m2.canonical.length}`,
            '.',
            '+OK Unique-ID listing follows',
            `1 ${uids[0]}`,
            `2 ${uids[1]}`,
            '.',
            `+OK ${m1.canonical.length} octets`,
            '',
          ].join('\r\n'),
          'latin1',
        ),
        stuff(m1.canonical),
        Buffer.from(`.\r\n+OK ${m2.canonical.length} octets\r\n`),
        stuff(m2.canonical),
        Buffer.from('.\r\n+OK Top of message follows\r\n'),
        stuff(m1.canonical.subarray(0, headerEnd)),
        Buffer.from('.\r\n+OK Postern signing off (2 messages left).\r\n'),
      ]);
    }

    const normalise = (b: Buffer): Buffer =>
      Buffer.from(b.toString('latin1').replace(/^(\+OK Postern ready\. )<[^>]+>/, '$1<TIMESTAMP>'), 'latin1');

    it('a whole session sent in one write gets the exact expected transcript', async () => {
      const c = await Pop3Client.open(srv.pop3Port);
      c.write(script);
      const out = normalise(await c.untilClosed());
      const want = expectedTranscript();
      assert.equal(out.toString('latin1'), want.toString('latin1'));
      assert.ok(out.equals(want));
    });

    it('the same session sent one byte per write gets the identical transcript', async () => {
      const c = await Pop3Client.open(srv.pop3Port);
      const bytes = Buffer.from(script, 'latin1');
      for (let i = 0; i < bytes.length; i++) {
        await new Promise<void>((resolve, reject) => c.socket.write(bytes.subarray(i, i + 1), (e) => (e ? reject(e) : resolve())));
      }
      const out = normalise(await c.untilClosed());
      assert.ok(out.equals(expectedTranscript()));
    });

    it('the session split into two writes at every possible point gets the identical transcript', async () => {
      const bytes = Buffer.from(script, 'latin1');
      const want = expectedTranscript();
      for (let i = 1; i < bytes.length; i++) {
        const c = await Pop3Client.open(srv.pop3Port);
        await new Promise<void>((resolve, reject) => c.socket.write(bytes.subarray(0, i), (e) => (e ? reject(e) : resolve())));
        c.write(bytes.subarray(i));
        const out = normalise(await c.untilClosed());
        assert.ok(out.equals(want), `split at ${i}: ${JSON.stringify(out.toString('latin1').slice(0, 300))}`);
      }
    });
  });

  it('many RETR and TOP in one session: replies stay whole and no listeners pile up on the socket', async () => {
    const m = dotsMessage();
    await deliver(srv, 'repeat', [m]);
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const c = await session(srv, 'repeat');
      for (let i = 0; i < 40; i++) {
        const r = await c.multi('RETR 1');
        assert.ok(r.body.equals(m.canonical));
        const t = await c.multi('TOP 1 1');
        const headerEnd = m.canonical.indexOf('\r\n\r\n') + 4;
        const firstLine = m.canonical.indexOf('\r\n', headerEnd) + 2;
        assert.ok(t.body.equals(m.canonical.subarray(0, firstLine)));
      }
      await c.quit();
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.map((w) => `${w.name}: ${w.message}`),
      [],
    );
  });

  it('never logs a password', () => {
    assertNoSecretsInLogs([...retiredLogs, ...srv.logs], Object.values(USERS));
  });
});

async function sizes(c: Pop3Client, numbers: number[]): Promise<number[]> {
  const out: number[] = [];
  for (const n of numbers) {
    const reply = await c.command(`LIST ${n}`);
    const m = /^\+OK (\d+) (\d+)$/.exec(reply);
    assert.ok(m, reply);
    out.push(Number(m[2]));
  }
  return out;
}

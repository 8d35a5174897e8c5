// LMTP intake end to end: per-recipient replies (RFC 2033), the size limit, and what lands in the
// Maildirs, checked over POP3 and on disk.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lmtpSend } from './support/lmtp-client.js';
import { listMaildir, uidsOnDisk } from './support/maildir.js';
import { address, simpleMessage, type TestMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const MAX = 4096;
const USERS = { alice: 'alice-lmtp-pw', bob: 'bob-lmtp-pw', carol: 'carol-lmtp-pw' };

/** A CRLF message of exactly `size` octets. */
function sizedMessage(id: string, size: number): TestMessage {
  const head = `X-Test-Id: ${id}\r\nSubject: ${size} octets\r\n\r\n`;
  const fill = size - head.length - 2;
  const lines: string[] = [];
  let left = fill;
  while (left > 0) {
    // 78 characters plus CRLF per line, the last line takes what is left.
    const n = Math.min(78, left);
    const chars = 'x'.repeat(n);
    left -= n;
    if (left >= 2) {
      lines.push(`${chars}\r\n`);
      left -= 2;
    } else {
      lines.push(chars + 'y'.repeat(left));
      left = 0;
    }
  }
  const bytes = Buffer.from(`${head}${lines.join('')}\r\n`, 'latin1');
  assert.equal(bytes.length, size);
  return { id, delivered: bytes, canonical: bytes };
}

/** The whole maildrop over POP3: [uid, bytes] per message. */
async function fetchAll(srv: TestServer, user: keyof typeof USERS): Promise<{ uid: string; bytes: Buffer }[]> {
  const c = await Pop3Client.connect(srv.pop3Port);
  await c.login(user, USERS[user]);
  const uids = (await c.listing('UIDL')).map((l) => l.split(' ')[1] as string);
  const out: { uid: string; bytes: Buffer }[] = [];
  for (let i = 0; i < uids.length; i++) {
    const r = await c.multi(`RETR ${i + 1}`);
    assert.match(r.status, /^\+OK /);
    out.push({ uid: uids[i] as string, bytes: r.body });
  }
  await c.quit();
  return out;
}

describe('LMTP intake', () => {
  let srv: TestServer;

  before(async () => {
    srv = await startTestServer({ users: USERS, env: { MAX_MESSAGE_SIZE: String(MAX) } });
  });
  after(async () => {
    await srv?.stop();
  });

  it('refuses an unknown recipient with 550 5.1.1 and stores nothing', async () => {
    const result = await lmtpSend(srv.lmtpPort, 'sender@example.com', ['nobody@example.com'], simpleMessage('unknown').delivered);
    assert.equal(result.rcpt.length, 1);
    assert.equal(result.rcpt[0]?.code, 550);
    assert.match(result.rcpt[0]?.text ?? '', /^5\.1\.1 /);
    assert.deepEqual(result.data, []);
    assert.deepEqual(await readdir(join(srv.dataDir, 'mail')).catch(() => []), []);
  });

  it('answers a two-recipient delivery with two 250s and both mailboxes get the same bytes', async () => {
    const m = simpleMessage('two-rcpt', 'one message\r\n.\r\n..two recipients');
    const result = await lmtpSend(srv.lmtpPort, 'sender@example.com', [address('alice'), address('bob')], m.delivered);
    assert.deepEqual(
      result.rcpt.map((r) => r.code),
      [250, 250],
    );
    assert.deepEqual(
      result.data.map((r) => r.code),
      [250, 250],
    );
    assert.match(result.data[0]?.text ?? '', /^2\.\d\.\d .*alice/);
    assert.match(result.data[1]?.text ?? '', /^2\.\d\.\d .*bob/);
    for (const user of ['alice', 'bob'] as const) {
      const got = await fetchAll(srv, user);
      assert.equal(got.length, 1, `${user} has the message`);
      assert.ok(got[0]?.bytes.equals(m.canonical), `${user} gets the delivered bytes back`);
      // The UIDL is the id the 250 reply named.
      assert.ok(result.data.some((r) => r.text.includes(got[0]?.uid as string)));
    }
    // The spool copy made for several recipients is gone.
    assert.deepEqual(await readdir(join(srv.dataDir, 'spool')).catch(() => []), []);
  });

  it('with known and unknown recipients, answers each RCPT and delivers only to the known ones', async () => {
    const before = { alice: await uidsOnDisk(srv.maildir('alice')), carol: await uidsOnDisk(srv.maildir('carol')) };
    const m = simpleMessage('mixed');
    const result = await lmtpSend(
      srv.lmtpPort,
      'sender@example.com',
      [address('alice'), 'ghost@example.com', address('carol'), 'phantom@example.com'],
      m.delivered,
    );
    assert.deepEqual(
      result.rcpt.map((r) => r.code),
      [250, 550, 250, 550],
    );
    assert.match(result.rcpt[1]?.text ?? '', /^5\.1\.1 /);
    assert.match(result.rcpt[3]?.text ?? '', /^5\.1\.1 /);
    // LMTP: one reply after DATA per accepted recipient, in RCPT order.
    assert.deepEqual(
      result.data.map((r) => r.code),
      [250, 250],
    );
    assert.match(result.data[0]?.text ?? '', /alice/);
    assert.match(result.data[1]?.text ?? '', /carol/);
    assert.equal((await uidsOnDisk(srv.maildir('alice'))).length, before.alice.length + 1);
    assert.equal((await uidsOnDisk(srv.maildir('carol'))).length, before.carol.length + 1);
    const carol = await fetchAll(srv, 'carol');
    assert.ok(carol.at(-1)?.bytes.equals(m.canonical));
    const mail = await readdir(join(srv.dataDir, 'mail'));
    assert.deepEqual(mail.sort(), ['alice', 'bob', 'carol']);
  });

  it('stores an empty DATA as a message of 0 octets, which RETR and TOP return as just the terminator', async () => {
    const result = await lmtpSend(srv.lmtpPort, 'sender@example.com', [address('carol')], Buffer.alloc(0), {
      rawData: Buffer.from('.\r\n'),
    });
    assert.deepEqual(
      result.data.map((r) => r.code),
      [250],
    );
    const c = await Pop3Client.connect(srv.pop3Port);
    await c.login('carol', USERS.carol);
    const list = await c.listing('LIST');
    assert.equal(list.at(-1), `${list.length} 0`);
    c.write(`RETR ${list.length}\r\n`);
    assert.equal(await c.line(), '+OK 0 octets');
    assert.equal(await c.line(), '.');
    c.write(`TOP ${list.length} 0\r\n`);
    assert.match(await c.line(), /^\+OK /);
    assert.equal(await c.line(), '.');
    assert.match(await c.command('NOOP'), /^\+OK/);
    // Leave carol's maildrop as it was for the tests below.
    assert.match(await c.command(`DELE ${list.length}`), /^\+OK /);
    await c.quit();
  });

  it(`accepts a message of exactly MAX_MESSAGE_SIZE (${MAX}) octets, with that LIST size`, async () => {
    const m = sizedMessage('exact-max', MAX);
    const result = await lmtpSend(srv.lmtpPort, 'sender@example.com', [address('carol')], m.delivered);
    assert.deepEqual(
      result.data.map((r) => r.code),
      [250],
    );
    const c = await Pop3Client.connect(srv.pop3Port);
    await c.login('carol', USERS.carol);
    const list = await c.listing('LIST');
    assert.equal(list.at(-1)?.split(' ')[1], String(MAX));
    const r = await c.multi(`RETR ${list.length}`);
    assert.ok(r.body.equals(m.canonical));
    await c.quit();
  });

  for (const [label, size, recipients] of [
    ['one octet over the limit, one recipient', MAX + 1, ['alice']],
    ['one octet over the limit, two recipients', MAX + 1, ['alice', 'bob']],
    ['far over the limit, one recipient', MAX * 40, ['bob']],
    ['far over the limit, three recipients', MAX * 40, ['alice', 'bob', 'carol']],
  ] as const) {
    it(`refuses a message ${label} with 552 5.3.4 per recipient and stores nothing`, async () => {
      const users = recipients as readonly (keyof typeof USERS)[];
      const beforeUids = await Promise.all(users.map((u) => uidsOnDisk(srv.maildir(u))));
      const m = sizedMessage(`too-big-${size}`, size);
      const result = await lmtpSend(srv.lmtpPort, 'sender@example.com', users.map(address), m.delivered);
      assert.deepEqual(
        result.rcpt.map((r) => r.code),
        users.map(() => 250),
      );
      assert.equal(result.data.length, users.length);
      for (const reply of result.data) {
        assert.equal(reply.code, 552, JSON.stringify(reply));
        assert.match(reply.text, /^5\.3\.4 /, JSON.stringify(reply));
      }
      for (const [i, u] of users.entries()) {
        assert.deepEqual(await uidsOnDisk(srv.maildir(u)), beforeUids[i], `nothing new for ${u}`);
        assert.deepEqual((await listMaildir(srv.maildir(u))).tmp, [], `no temporary file left for ${u}`);
      }
      assert.deepEqual(await readdir(join(srv.dataDir, 'spool')).catch(() => []), []);
    });
  }

  it('keeps working on the same connection after a refusal (the next transaction is delivered)', async () => {
    // lmtpSend opens a fresh connection; here one connection carries a refused and an accepted message.
    const { connect } = await import('node:net');
    const socket = connect({ host: '127.0.0.1', port: srv.lmtpPort });
    socket.setEncoding('latin1');
    let buffer = '';
    const waiters: (() => void)[] = [];
    socket.on('data', (d: string) => {
      buffer += d;
      for (const w of waiters.splice(0)) w();
    });
    const replyLine = async (): Promise<string> => {
      for (;;) {
        const m = /^(\d{3}) ([^\r]*)\r\n/m.exec(buffer);
        if (m) {
          buffer = buffer.slice((m.index ?? 0) + m[0].length);
          return `${m[1]} ${m[2]}`;
        }
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    const skipMulti = async (): Promise<void> => {
      for (;;) {
        const m = /^(\d{3})([ -])[^\r]*\r\n/.exec(buffer);
        if (m) {
          buffer = buffer.slice(m[0].length);
          if (m[2] === ' ') return;
          continue;
        }
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    const send = async (big: boolean): Promise<string> => {
      socket.write('MAIL FROM:<sender@example.com>\r\n');
      assert.match(await replyLine(), /^250 /);
      socket.write(`RCPT TO:<${address('bob')}>\r\n`);
      assert.match(await replyLine(), /^250 /);
      socket.write('DATA\r\n');
      assert.match(await replyLine(), /^354 /);
      socket.write(sizedMessage(big ? 'same-conn-big' : 'same-conn-ok', big ? MAX * 2 : 300).delivered);
      socket.write('.\r\n');
      return replyLine();
    };
    try {
      assert.match(await replyLine(), /^220 /);
      socket.write('LHLO test.example\r\n');
      await skipMulti();
      const beforeUids = await uidsOnDisk(srv.maildir('bob'));
      assert.match(await send(true), /^552 5\.3\.4 /);
      assert.match(await send(false), /^250 /);
      socket.write('QUIT\r\n');
      assert.match(await replyLine(), /^221 /);
      assert.equal((await uidsOnDisk(srv.maildir('bob'))).length, beforeUids.length + 1);
    } finally {
      socket.destroy();
    }
  });

  it('never logs a password', () => {
    assertNoSecretsInLogs(srv.logs, Object.values(USERS));
  });
});

describe('LMTP intake when the store fails', () => {
  it('answers 451 4.3.0 for that recipient, 250 for the others, and stores nothing half-done', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises');
    const srv = await startTestServer({ users: { alice: 'a-pw', bob: 'b-pw' } });
    try {
      // bob's Maildir path runs through a regular file: every write under it fails (ENOTDIR),
      // whoever the tests run as.
      await mkdir(join(srv.dataDir, 'mail'), { recursive: true });
      await writeFile(join(srv.dataDir, 'mail', 'bob'), 'not a directory');
      const message = simpleMessage('store-failure');
      const r = await lmtpSend(srv.lmtpPort, 'sender@example.com', [address('alice'), address('bob')], message.delivered);
      assert.deepEqual(r.rcpt.map((x) => x.code), [250, 250]);
      assert.equal(r.data.length, 2);
      assert.equal(r.data[0]!.code, 250);
      assert.equal(r.data[1]!.code, 451);
      assert.match(r.data[1]!.text, /^4\.3\.0 /);
      assert.equal((await uidsOnDisk(srv.maildir('alice'))).length, 1);
      // Nothing left in alice's tmp/ either: the failure was bob's alone.
      assert.deepEqual(await readdir(join(srv.maildir('alice'), 'tmp')), []);
    } finally {
      await srv.stop();
    }
  });
});

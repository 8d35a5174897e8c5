// RETR writes each message from reused output memory that is released only when the socket has
// written it (services/gateway: sendStored; libs/pop3-protocol: RetrFramer). Here more clients
// than there are output slots stop reading in the middle of multi-megabyte messages (LF files with
// dot lines, as Postfix writes them): Python clients with a 4 kB receive buffer, so the server's
// writes really block. Another client retrieves while they are stuck, then they resume one by one:
// every client must get exactly its own message.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { Pop3Client } from './support/pop3-client.js';
import { requireProgram } from './support/run.js';
import { startTestServer } from './support/server.js';

const STALLED = 12;
const SIZE = 3 * 1024 * 1024;

/** An LF message unique to `tag`, about `size` octets, with lines that start with dots. */
function lfMessage(tag: string, size: number): Buffer {
  const lines = [`Subject: ${tag}`, `Message-ID: <${tag}@test>`, ''];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = i % 7 === 0 ? `.${tag} dot line ${i}` : i % 11 === 0 ? `..${tag} ${i}` : `${tag} line ${i} ${'x'.repeat(i % 90)}`;
    lines.push(line);
    n += line.length + 1;
  }
  return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
}

const canonical = (lf: Buffer): Buffer => Buffer.from(lf.toString('latin1').replaceAll('\n', '\r\n'), 'latin1');

async function putLf(maildir: string, name: string, bytes: Buffer): Promise<void> {
  for (const d of ['tmp', 'new', 'cur']) await mkdir(join(maildir, d), { recursive: true });
  await writeFile(join(maildir, 'new', name), bytes);
}


/**
 * Opens one connection per user with a 4 kB receive buffer, sends USER, PASS and RETR 1, reads
 * until the RETR status line, prints "stalled", waits for a line on stdin, then reads each reply
 * to its end (last user first) and prints "<user> <status octets> <sha256 of the un-stuffed body>".
 */
const STALLING_CLIENT = `
import hashlib, re, socket, sys
port, users = int(sys.argv[1]), sys.argv[2:]
conns = []
for u in users:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', port))
    s.sendall(('USER %s\\r\\nPASS %s-secret\\r\\nRETR 1\\r\\n' % (u, u)).encode())
    buf = b''
    while re.search(rb'\\+OK \\d+ octets\\r\\n', buf) is None:
        d = s.recv(1024)
        if not d: sys.exit(u + ': closed before the RETR reply')
        buf += d
    conns.append((u, s, buf))
print('stalled', flush=True)
sys.stdin.readline()
for u, s, buf in reversed(conns):
    parts = [buf]
    tail = buf[-5:]
    while tail != b'\\r\\n.\\r\\n':
        d = s.recv(1 << 16)
        if not d: sys.exit(u + ': closed before the terminator')
        parts.append(d)
        tail = (tail + d)[-5:]
    data = b''.join(parts)
    m = re.search(rb'\\+OK (\\d+) octets\\r\\n', data)
    body = data[m.end():-3]
    body = re.sub(rb'(^|\\r\\n)\\.\\.', rb'\\1.', body)
    print(u, int(m.group(1)), len(body), hashlib.sha256(body).hexdigest(), flush=True)
    s.close()
`;

test('clients that stall mid-RETR (more of them than output slots) each get exactly their own message', { timeout: 120_000 }, async () => {
  const python = requireProgram('python3');
  const users: Record<string, string> = { probe: 'probe-secret' };
  for (let i = 1; i <= STALLED; i++) users[`u${i}`] = `u${i}-secret`;
  const t = await startTestServer({ users });
  let client: ReturnType<typeof spawn> | null = null;
  try {
    const expected = new Map<string, Buffer>();
    for (let i = 1; i <= STALLED; i++) {
      const lf = lfMessage(`u${i}`, SIZE + i * 1013);
      expected.set(`u${i}`, canonical(lf));
      await putLf(t.maildir(`u${i}`), `1700000000.M${i}P1Q1.test`, lf);
    }
    const small = [lfMessage('probe-a', 3_000), lfMessage('probe-b', 70_000), lfMessage('probe-c', 200_000)];
    for (const [k, lf] of small.entries()) await putLf(t.maildir('probe'), `1700000001.M${k}P1Q1.test`, lf);

    const names = Array.from({ length: STALLED }, (_, i) => `u${i + 1}`);
    client = spawn(python, ['-c', STALLING_CLIENT, String(t.pop3Port), ...names], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: client.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
    const exited = once(client, 'exit');
    assert.equal((await lines.next()).value, 'stalled');

    // Meanwhile another session retrieves small and chunked messages.
    const probe = await Pop3Client.connect(t.pop3Port);
    assert.match(await probe.command('USER probe'), /^\+OK/);
    assert.match(await probe.command('PASS probe-secret'), /^\+OK/);
    for (let n = 1; n <= small.length; n++) {
      probe.write(`RETR ${n}\r\n`);
      const got = await probe.readMulti();
      assert.match(got.status, /^\+OK/);
      assert.deepEqual(got.body, canonical(small[n - 1] as Buffer), `probe message ${n}`);
    }
    await probe.command('QUIT');

    // Resume: the stalled clients read to the end, last first.
    client.stdin?.end('go\n');
    const seen = new Set<string>();
    for (let k = 0; k < STALLED; k++) {
      const line = (await lines.next()).value as string;
      const [user = '', status, length, digest] = line.split(' ');
      const want = expected.get(user);
      assert.ok(want, `a report for a known user: ${line}`);
      assert.equal(Number(status), want.length, `${user}: the status line's octets`);
      assert.equal(Number(length), want.length, `${user}: body length`);
      assert.equal(digest, createHash('sha256').update(want).digest('hex'), `${user} got its own message, byte for byte`);
      seen.add(user);
    }
    assert.equal(seen.size, STALLED);
    const [code] = (await exited) as [number | null];
    assert.equal(code, 0);
  } finally {
    client?.kill();
    await t.stop();
  }
});

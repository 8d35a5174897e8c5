import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MultilineDecoder,
  Pop3Client,
  Pop3Error,
  ReplyReader,
  parseStatusLine,
  type Expectation,
  type ReplyEvent,
} from '../src/pop3-client.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Reference encoder: CRLF lines, a '.' before lines that start with '.', then ".CRLF". */
function stuff(body: string): string {
  if (body.length === 0) return '.\r\n';
  return body.replace(/(^|\r\n)\./g, '$1..') + '.\r\n';
}

/** Feeds `data` to a fresh decoder cut at the given offsets; returns body and end offset. */
function decodeSplit(data: Buffer, cuts: number[]): { body: string; end: number; octets: number } {
  const d = new MultilineDecoder({ keep: true });
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < data.length).sort((x, y) => x - y), data.length];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const chunk = data.subarray(bounds[i], bounds[i + 1]);
    const end = d.push(chunk);
    if (end !== -1) {
      return { body: (d.body() as Buffer).toString('latin1'), end: (bounds[i] as number) + end, octets: d.octets };
    }
  }
  return { body: '', end: -1, octets: d.octets };
}

describe('parseStatusLine', () => {
  const table: Array<[string, ReturnType<typeof parseStatusLine>]> = [
    ['+OK', { ok: true, text: '', respCode: null }],
    ['+OK 2 320', { ok: true, text: '2 320', respCode: null }],
    ['+OK ', { ok: true, text: '', respCode: null }],
    ['-ERR', { ok: false, text: '', respCode: null }],
    ['-ERR no such message', { ok: false, text: 'no such message', respCode: null }],
    ['-ERR [IN-USE] Mailbox is locked', { ok: false, text: 'Mailbox is locked', respCode: 'IN-USE' }],
    ['-ERR [SYS/TEMP] try later', { ok: false, text: 'try later', respCode: 'SYS/TEMP' }],
    ['+OK [XYZ]', { ok: true, text: '', respCode: 'XYZ' }],
    ['-ERR [] odd', { ok: false, text: '[] odd', respCode: null }],
    ['+ ', 'continuation'],
    ['+', 'continuation'],
    ['+ dGVzdA==', 'continuation'],
  ];
  for (const [line, want] of table) {
    it(JSON.stringify(line), () => assert.deepEqual(parseStatusLine(line), want));
  }
  for (const bad of ['+OKAY', '-ERROR x', 'OK', '', '* OK', '+ok']) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseStatusLine(bad), (e: unknown) => e instanceof Pop3Error && e.code === 'protocol');
    });
  }
});

describe('MultilineDecoder', () => {
  // [wire bytes after the +OK line, decoded body]
  const cases: Array<[string, string]> = [
    ['.\r\n', ''],
    ['a\r\n.\r\n', 'a\r\n'],
    ['..\r\n.\r\n', '.\r\n'],
    ['...\r\n.\r\n', '..\r\n'],
    ['..x\r\n.\r\n', '.x\r\n'],
    ['.x\r\n.\r\n', 'x\r\n'], // RFC 1939: a leading dot is dropped even if the server did not stuff
    ['\r\n\r\n.\r\n', '\r\n\r\n'],
    ['a\n.b\r\n.\r\n', 'a\n.b\r\n'], // a bare LF ends no line: the dot is data
    ['a\r.\r\n.\r\n', 'a\r.\r\n'],
    ['.\rX\r\n.\r\n', '\rX\r\n'], // "." CR X: stuffing dot, then data
    ['..\r\n..\r\n.\r\n', '.\r\n.\r\n'],
    ['Subject: x\r\n\r\nbody\r\n..\r\n.. two\r\n.\r\n', 'Subject: x\r\n\r\nbody\r\n.\r\n. two\r\n'],
    ['x\r\n.\n.\r\n.\r\n', 'x\r\n\n.\r\n'], // ". LF" is no terminator: a stuffing dot, LF and '.' as data
  ];
  for (const [wire, body] of cases) {
    it(`${JSON.stringify(wire)} at every split`, () => {
      const data = b(wire + '+OK next\r\n');
      for (let cut = 0; cut <= data.length; cut++) {
        const r = decodeSplit(data, [cut]);
        assert.equal(r.body, body, `split at ${cut}`);
        assert.equal(r.octets, body.length);
        assert.equal(r.end, wire.length, `end offset, split at ${cut}`);
      }
      for (let cut = 0; cut < data.length; cut++) {
        for (let cut2 = cut + 1; cut2 < data.length; cut2++) {
          assert.equal(decodeSplit(data, [cut, cut2]).body, body, `splits at ${cut}, ${cut2}`);
        }
      }
      const bytes = Array.from({ length: data.length }, (_, i) => i + 1);
      assert.equal(decodeSplit(data, bytes).body, body, 'one byte at a time');
    });
  }

  it('reports progress through onChunk and counts octets without keeping', () => {
    const pieces: Buffer[] = [];
    const d = new MultilineDecoder({ keep: false, onChunk: (c) => pieces.push(Buffer.from(c)) });
    assert.equal(d.push(b('..a\r\nb')), -1);
    assert.equal(d.push(b('\r\n.\r\nrest')), 5);
    assert.equal(Buffer.concat(pieces).toString(), '.a\r\nb\r\n');
    assert.equal(d.octets, 7);
    assert.equal(d.body(), null);
    assert.ok(d.done);
  });

  it('round-trips random bodies at random chunkings', () => {
    const line = fc.oneof(
      fc.string({ unit: fc.constantFrom('a', 'b', ' ', '.', '\t', 'Z', '\n', '\r'), maxLength: 12 }).map((s) =>
        // A CR LF inside a line would make two lines; keep lone CR and LF only.
        s.replace(/\r\n/g, '\r-'),
      ),
      fc.constantFrom('.', '..', '.x', ''),
    );
    const body = fc.array(line, { maxLength: 12 }).map((ls) => ls.map((l) => `${l}\r\n`).join(''));
    fc.assert(
      fc.property(body, fc.array(fc.nat({ max: 400 }), { maxLength: 6 }), (text, cuts) => {
        const wire = stuff(text);
        const data = b(wire + '+OK\r\n');
        const r = decodeSplit(data, cuts);
        assert.equal(r.body, text);
        assert.equal(r.end, wire.length);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('ReplyReader', () => {
  interface Step {
    exp: Expectation;
    want: { ok: boolean; text: string; respCode: string | null; body: string | null };
  }
  const single = (label: string): Expectation => ({ multiline: false, sink: null, label });
  const multi = (label: string): Expectation => ({ multiline: true, sink: { keep: true }, label });
  const steps: Step[] = [
    { exp: single(''), want: { ok: true, text: 'POP3 ready <1.2@h>', respCode: null, body: null } },
    { exp: multi('CAPA'), want: { ok: true, text: '', respCode: null, body: 'TOP\r\nUIDL\r\nPIPELINING\r\n' } },
    { exp: single('USER u'), want: { ok: true, text: '', respCode: null, body: null } },
    { exp: single('PASS ***'), want: { ok: false, text: 'locked', respCode: 'IN-USE', body: null } },
    { exp: multi('RETR 1'), want: { ok: true, text: '12 octets', respCode: null, body: '.\r\nab\r\n\r\n' } },
    { exp: multi('RETR 9'), want: { ok: false, text: 'no such message', respCode: null, body: null } },
    { exp: multi('LIST'), want: { ok: true, text: '', respCode: null, body: '' } },
    { exp: single('QUIT'), want: { ok: true, text: 'bye', respCode: null, body: null } },
  ];
  const stream = b(
    '+OK POP3 ready <1.2@h>\r\n' +
      '+OK\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n' +
      '+OK\r\n' +
      '-ERR [IN-USE] locked\r\n' +
      '+OK 12 octets\r\n..\r\nab\r\n\r\n.\r\n' +
      '-ERR no such message\r\n' +
      '+OK\r\n.\r\n' +
      '+OK bye\r\n',
  );

  function replay(cuts: number[]): Array<Step['want']> {
    const queue = steps.map((s) => s.exp);
    const got: Array<Step['want']> = [];
    const reader = new ReplyReader({
      current: () => queue[0],
      complete: (ev: ReplyEvent) => {
        queue.shift();
        got.push({ ...ev.reply, body: ev.body === null ? null : ev.body.toString('latin1') });
      },
    });
    const bounds = [0, ...cuts.filter((c) => c > 0 && c < stream.length).sort((x, y) => x - y), stream.length];
    for (let i = 0; i + 1 < bounds.length; i++) reader.push(stream.subarray(bounds[i], bounds[i + 1]));
    assert.equal(reader.midReply, false);
    return got;
  }

  const want = steps.map((s) => s.want);
  it('splits a pipelined stream into replies, at every split point', () => {
    for (let cut = 0; cut <= stream.length; cut++) assert.deepEqual(replay([cut]), want, `split at ${cut}`);
  });
  it('one byte at a time', () => {
    assert.deepEqual(
      replay(Array.from({ length: stream.length }, (_, i) => i)),
      want,
    );
  });
  it('at random pairs and triples of split points', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: stream.length }), { minLength: 2, maxLength: 3 }), (cuts) => {
        assert.deepEqual(replay(cuts), want);
      }),
      { numRuns: 500 },
    );
  });

  function reader(exps: Expectation[]): ReplyReader {
    return new ReplyReader({ current: () => exps[0], complete: () => void exps.shift() });
  }
  const isProtocol = (e: unknown): boolean => e instanceof Pop3Error && e.code === 'protocol';

  it('rejects a status line ending in a bare LF', () => {
    assert.throws(() => reader([single('NOOP')]).push(b('+OK\n')), isProtocol);
  });
  it('rejects a line nobody asked for', () => {
    assert.throws(() => reader([]).push(b('+OK surprise\r\n')), isProtocol);
  });
  it('rejects an over-long status line even without its end', () => {
    const r = reader([single('NOOP')]);
    assert.throws(() => {
      for (let i = 0; i < 100; i++) r.push(b('x'.repeat(100)));
    }, isProtocol);
  });
  it('rejects a continuation the command does not expect', () => {
    assert.throws(() => reader([single('NOOP')]).push(b('+ \r\n')), isProtocol);
  });
  it('passes a continuation to the command that expects one', () => {
    const seen: string[] = [];
    const exps: Expectation[] = [{ multiline: false, sink: null, label: 'AUTH', onContinuation: (t) => seen.push(t) }];
    reader(exps).push(b('+ \r\n+ abc\r\n+OK\r\n'));
    assert.deepEqual(seen, ['', 'abc']);
    assert.equal(exps.length, 0);
  });
  it('rejects bytes that follow an STLS +OK in the same segment', () => {
    assert.throws(
      () => reader([{ multiline: false, sink: null, label: 'STLS', last: true }, single('X')]).push(b('+OK go\r\n+OK injected\r\n')),
      isProtocol,
    );
  });
  it('rejects bytes that follow an STLS +OK in a later segment', () => {
    const r = reader([{ multiline: false, sink: null, label: 'STLS', last: true }, single('X')]);
    r.push(b('+OK go\r\n'));
    assert.throws(() => r.push(b('+OK injected\r\n')), isProtocol);
  });
});

// ---------------------------------------------------------------------------------------------
// The client over a socket, against a small scripted server

interface Fake {
  port: number;
  received: string[];
  /** Command lines that arrived together with others in one read. */
  batched: number;
  close(): Promise<void>;
}

type Responder = (line: string, sock: net.Socket) => string | null | undefined;

const MAILBOX = [
  'Subject: one\r\n\r\nhello\r\n',
  'Subject: two\r\n\r\n.leading dot\r\n.\r\nend\r\n',
  'Subject: three\r\nX: y\r\n\r\n' + 'line of text\r\n'.repeat(2000),
];

const PLAIN_TOKEN = Buffer.from('\0u\0right').toString('base64');

function standardResponder(): Responder {
  let deleted = new Set<number>();
  let saslPending = false;
  return (line) => {
    if (saslPending) {
      saslPending = false;
      return line === PLAIN_TOKEN ? '+OK\r\n' : '-ERR [AUTH] no\r\n';
    }
    const [cmd, ...args] = line.split(' ');
    const n = Number(args[0]);
    switch (cmd?.toUpperCase()) {
      case 'CAPA':
        return '+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\nSASL PLAIN\r\nRESP-CODES\r\n.\r\n';
      case 'USER':
        return '+OK\r\n';
      case 'PASS':
        return args[0] === 'right' ? '+OK logged in\r\n' : '-ERR [AUTH] invalid credentials\r\n';
      case 'AUTH':
        if (args[1] === undefined) {
          saslPending = true;
          return '+ \r\n';
        }
        return args[1] === PLAIN_TOKEN ? '+OK\r\n' : '-ERR [AUTH] no\r\n';
      case 'STAT':
        return `+OK ${MAILBOX.length - deleted.size} ${MAILBOX.reduce((a, m, i) => a + (deleted.has(i + 1) ? 0 : m.length), 0)}\r\n`;
      case 'LIST':
        if (args[0] !== undefined) return `+OK ${n} ${MAILBOX[n - 1]?.length}\r\n`;
        return '+OK\r\n' + MAILBOX.map((m, i) => `${i + 1} ${m.length}\r\n`).join('') + '.\r\n';
      case 'UIDL':
        if (args[0] !== undefined) return `+OK ${n} uid-${n}\r\n`;
        return '+OK\r\n' + MAILBOX.map((_, i) => `${i + 1} uid-${i + 1}\r\n`).join('') + '.\r\n';
      case 'RETR': {
        const m = MAILBOX[n - 1];
        if (m === undefined || deleted.has(n)) return '-ERR no such message\r\n';
        return `+OK ${m.length} octets\r\n${stuff(m)}`;
      }
      case 'TOP': {
        const m = MAILBOX[n - 1] as string;
        const [head, body] = m.split('\r\n\r\n') as [string, string];
        const lines = body.split('\r\n').slice(0, Number(args[1]));
        return `+OK\r\n${stuff(head + '\r\n\r\n' + lines.map((l) => l + '\r\n').join(''))}`;
      }
      case 'DELE':
        deleted.add(n);
        return '+OK\r\n';
      case 'RSET':
        deleted = new Set();
        return '+OK\r\n';
      case 'NOOP':
        return '+OK\r\n';
      case 'SLOW':
        return null; // never answered
      case 'QUIT':
        return '+OK bye\r\n';
      default:
        return '-ERR unknown\r\n';
    }
  };
}

/** A server that writes every reply in small pieces (so the client sees many segments). */
function fakeServer(respond: Responder, greeting = '+OK fake POP3 <9.9@fake>\r\n'): Promise<Fake> {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const state = { batched: 0 };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.setNoDelay(true);
    const writeInPieces = (text: string): void => {
      const buf = Buffer.from(text, 'latin1');
      for (let i = 0; i < buf.length; i += 7) sock.write(buf.subarray(i, i + 7));
    };
    writeInPieces(greeting);
    let pending = '';
    sock.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      const lines = pending.split('\r\n');
      pending = lines.pop() as string;
      if (lines.length > 1) state.batched += lines.length;
      for (const line of lines) {
        received.push(line);
        const reply = respond(line, sock);
        if (reply !== null && reply !== undefined) writeInPieces(reply);
        if (line.toUpperCase() === 'QUIT') sock.end();
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address() as net.AddressInfo;
      resolve({
        port: addr.port,
        received,
        get batched() {
          return state.batched;
        },
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

describe('Pop3Client against a scripted server', () => {
  const servers: Fake[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });
  async function connect(
    opts: { pipelining?: boolean; timeoutMs?: number; respond?: Responder; greeting?: string; reuseReadBuffer?: boolean } = {},
  ) {
    const fake = await fakeServer(opts.respond ?? standardResponder(), opts.greeting);
    servers.push(fake);
    const client = await Pop3Client.connect({
      host: '127.0.0.1',
      port: fake.port,
      pipelining: opts.pipelining,
      timeoutMs: opts.timeoutMs ?? 5_000,
      reuseReadBuffer: opts.reuseReadBuffer,
    });
    return { fake, client };
  }

  it('runs a whole session', async () => {
    const { client, fake } = await connect();
    assert.equal(client.greeting.text, 'fake POP3 <9.9@fake>');
    assert.equal(client.apopTimestamp, '<9.9@fake>');
    const caps = await client.capa();
    assert.deepEqual(caps.get('SASL'), ['PLAIN']);
    assert.ok(caps.has('PIPELINING'));
    await client.login('u', 'right');
    assert.deepEqual(await client.stat(), { count: 3, size: MAILBOX.reduce((a, m) => a + m.length, 0) });
    assert.deepEqual(await client.list(), MAILBOX.map((m, i) => ({ msg: i + 1, size: m.length })));
    assert.deepEqual(await client.list(2), { msg: 2, size: (MAILBOX[1] as string).length });
    assert.deepEqual(await client.uidl(), [1, 2, 3].map((n) => ({ msg: n, uid: `uid-${n}` })));
    assert.deepEqual(await client.uidl(3), { msg: 3, uid: 'uid-3' });
    for (let n = 1; n <= 3; n++) {
      const r = await client.retr(n, { keepBody: true });
      assert.equal(r.body?.toString('latin1'), MAILBOX[n - 1]);
      assert.equal(r.octets, (MAILBOX[n - 1] as string).length);
      const counted = await client.retr(n);
      assert.equal(counted.body, null);
      assert.equal(counted.octets, r.octets);
    }
    const top = await client.top(2, 1);
    assert.equal(top.body?.toString('latin1'), 'Subject: two\r\n\r\n.leading dot\r\n');
    await client.dele(1);
    assert.equal((await client.stat()).count, 2);
    await client.rset();
    await client.noop();
    const bye = await client.quit();
    assert.equal(bye.text, 'bye');
    assert.ok(client.isClosed);
    assert.deepEqual(fake.received.slice(0, 3), ['CAPA', 'USER u', 'PASS right']);
  });

  it('with one read buffer for all clients, kept bodies and lists stay intact', async () => {
    const sessions = await Promise.all([connect({ pipelining: true, reuseReadBuffer: true }), connect({ reuseReadBuffer: true })]);
    const results = await Promise.all(
      sessions.map(async ({ client }) => {
        await client.login('u', 'right');
        const uidl = await client.uidl();
        const bodies = await Promise.all([1, 2, 3].map((n) => client.retr(n, { keepBody: true })));
        const counted = await Promise.all([1, 2, 3].map((n) => client.retr(n)));
        await client.quit();
        return { uidl, bodies, counted };
      }),
    );
    for (const r of results) {
      assert.deepEqual(r.uidl, [1, 2, 3].map((n) => ({ msg: n, uid: `uid-${n}` })));
      assert.deepEqual(r.bodies.map((b) => b.body?.toString('latin1')), MAILBOX);
      assert.deepEqual(r.counted.map((c) => c.octets), MAILBOX.map((m) => m.length));
    }
  });

  it('fails a command with the reply, response code and temporary flag', async () => {
    const { client } = await connect();
    await assert.rejects(client.login('u', 'wrong'), (e: unknown) => {
      assert.ok(e instanceof Pop3Error);
      assert.equal(e.code, 'negative-reply');
      assert.equal(e.reply?.respCode, 'AUTH');
      assert.equal(e.temporary, false);
      assert.equal(e.command, 'PASS ***');
      assert.ok(!e.message.includes('wrong'), 'the password is not in the message');
      return true;
    });
    await assert.rejects(client.retr(9), (e: unknown) => e instanceof Pop3Error && e.code === 'negative-reply' && e.temporary);
    // The connection is still usable after -ERR.
    await client.noop();
    const raw = await client.command('XYZZY');
    assert.deepEqual(raw.reply, { ok: false, text: 'unknown', respCode: null });
    client.destroy();
  });

  it('pipelines: every command goes out before the first reply, replies come back in order', async () => {
    const { client, fake } = await connect({ pipelining: true });
    await client.login('u', 'right');
    const before = fake.batched;
    const [stat, r1, r2, r3, list] = await Promise.all([client.stat(), client.retr(1), client.retr(2), client.retr(3), client.list()]);
    assert.ok(fake.batched - before >= 5, `commands arrived batched (${fake.batched - before})`);
    assert.equal(stat.count, 3);
    assert.deepEqual([r1.octets, r2.octets, r3.octets], MAILBOX.map((m) => m.length));
    assert.equal(list.length, 3);
    await client.quit();
  });

  it('without pipelining, waits for each reply before the next command', async () => {
    const { client, fake } = await connect({ pipelining: false });
    await client.login('u', 'right');
    const before = fake.batched;
    await Promise.all([client.stat(), client.retr(1), client.noop(), client.noop()]);
    assert.equal(fake.batched, before);
    await client.quit();
  });

  it('AUTH PLAIN with and without an initial response', async () => {
    const a = await connect();
    await a.client.authPlain('u', 'right');
    assert.equal(a.fake.received[0], `AUTH PLAIN ${Buffer.from('\0u\0right').toString('base64')}`);
    await a.client.quit();
    const c = await connect();
    await c.client.authPlain('u', 'right', { initialResponse: false });
    assert.deepEqual(c.fake.received, ['AUTH PLAIN', Buffer.from('\0u\0right').toString('base64')]);
    await assert.rejects(c.client.authPlain('u', 'wrong'), (e: unknown) => e instanceof Pop3Error && e.reply?.respCode === 'AUTH');
    await c.client.quit();
  });

  it('times out a command the server never answers, and fails what was queued', async () => {
    const { client } = await connect({ timeoutMs: 150 });
    const slow = client.command('SLOW');
    const queued = client.noop();
    await assert.rejects(slow, (e: unknown) => e instanceof Pop3Error && e.code === 'timeout' && e.temporary);
    await assert.rejects(queued, (e: unknown) => e instanceof Pop3Error && e.code === 'timeout' && e.command === 'NOOP');
    assert.ok(client.isClosed);
  });

  it('reports a connection the server drops mid-reply as closed', async () => {
    const { client } = await connect({
      respond: (line, sock) => {
        if (line.startsWith('RETR')) {
          sock.write('+OK\r\npartial line\r\n');
          sock.destroy();
          return null;
        }
        return '+OK\r\n';
      },
    });
    await assert.rejects(client.retr(1), (e: unknown) => e instanceof Pop3Error && e.code === 'closed');
  });

  it('rejects a -ERR greeting', async () => {
    const fake = await fakeServer(standardResponder(), '-ERR [SYS/TEMP] go away\r\n');
    servers.push(fake);
    await assert.rejects(
      Pop3Client.connect({ host: '127.0.0.1', port: fake.port }),
      (e: unknown) => e instanceof Pop3Error && e.code === 'negative-reply' && e.reply?.respCode === 'SYS/TEMP',
    );
  });

  it('reports a refused connection as connect', async () => {
    const fake = await fakeServer(standardResponder());
    await fake.close();
    await assert.rejects(
      Pop3Client.connect({ host: '127.0.0.1', port: fake.port }),
      (e: unknown) => e instanceof Pop3Error && e.code === 'connect' && e.temporary,
    );
  });

  it('refuses arguments that would inject a command', async () => {
    const { client } = await connect();
    await assert.rejects(client.user('u\r\nDELE 1'), (e: unknown) => e instanceof Pop3Error && e.code === 'invalid-argument');
    await assert.rejects(client.retr(-1), (e: unknown) => e instanceof Pop3Error && e.code === 'invalid-argument');
    await client.quit();
  });

  it('treats bytes after an STLS +OK as an attack and closes', async () => {
    const { client } = await connect({ respond: (line) => (line === 'STLS' ? '+OK begin TLS\r\n-ERR injected\r\n' : '+OK\r\n') });
    await assert.rejects(client.stls(), (e: unknown) => e instanceof Pop3Error && (e.code === 'protocol' || e.code === 'connect'));
    assert.ok(client.isClosed);
  });

  it('aborts on the caller signal', async () => {
    const fake = await fakeServer(standardResponder());
    servers.push(fake);
    const ac = new AbortController();
    const client = await Pop3Client.connect({ host: '127.0.0.1', port: fake.port, signal: ac.signal });
    const slow = client.command('SLOW');
    ac.abort();
    await assert.rejects(slow, (e: unknown) => e instanceof Pop3Error && e.code === 'aborted');
  });
});

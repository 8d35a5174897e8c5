import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { MemoryLockManager } from '@postern/locks';
import {
  MaildirStore,
  StoreError,
  maildirPathFromTemplate,
  maildirUid,
  parseMaildirName,
  sanitizeMaildirHostname,
  withSizeHints,
  type MailboxRef,
  type MailStore,
} from '../src/index.js';
import { canonicalReference } from '../src/reference.js';

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const ALICE: MailboxRef = { id: 'alice', username: 'alice@example.org' };

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'postern-maildir-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
async function freshMaildir(options: { saveCrlf?: boolean } = {}): Promise<{ root: string; store: MaildirStore; locks: MemoryLockManager }> {
  const root = join(scratch, `box-${++counter}`, 'Maildir');
  const store = new MaildirStore({ pathFor: () => root, hostname: 'mx.example.org', ...options });
  return { root, store, locks: new MemoryLockManager() };
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function listing(store: MailStore, locks: MemoryLockManager, mailbox = ALICE) {
  const lease = await locks.acquire(mailbox.id);
  assert.ok(lease);
  const drop = await store.open(mailbox, lease);
  try {
    const out = [];
    for (let i = 0; i < drop.messages.length; i++) {
      out.push({ ...drop.messages[i]!, bytes: await collect(await drop.read(i, { bodyLines: null })) });
    }
    return out;
  } finally {
    await drop.close();
  }
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

function isStoreError(code: StoreError['code']): (error: unknown) => boolean {
  return (error: unknown) => error instanceof StoreError && error.code === code;
}

// Live memory, not garbage: collect, let the freed buffers go, collect again.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function liveMemory(): Promise<number> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 10));
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

describe('Maildir names and UIDLs', () => {
  test('parses base, hints, other fields and the info suffix', () => {
    assert.deepEqual(parseMaildirName('1700000000.M123P456Q7.host,S=1234,W=1260:2,S'), {
      base: '1700000000.M123P456Q7.host',
      stored: 1234,
      virtual: 1260,
      fields: [],
      info: '2,S',
    });
    assert.deepEqual(parseMaildirName('1700000000.V801I2M3.host'), {
      base: '1700000000.V801I2M3.host',
      stored: undefined,
      virtual: undefined,
      fields: [],
      info: undefined,
    });
    const odd = parseMaildirName('base,X=1,S=abc:2,RS');
    assert.deepEqual(odd.fields, ['X=1', 'S=abc']);
    assert.equal(withSizeHints(odd, 10, 12), 'base,X=1,S=abc,S=10,W=12:2,RS');
    assert.equal(withSizeHints(parseMaildirName('b:2,'), 1, 2), 'b,S=1,W=2:2,');
  });

  test('UIDL is the base name when printable and at most 70 characters, else a stable hash', () => {
    const ordinary = '1700000000.M123P456Q7.mx.example.org';
    assert.equal(maildirUid(ordinary), ordinary);
    assert.equal(maildirUid('x'.repeat(70)), 'x'.repeat(70));
    const long = 'x'.repeat(71);
    const hashed = maildirUid(long);
    assert.match(hashed, /^h\.[A-Za-z0-9_-]{27}$/);
    assert.equal(maildirUid(long), hashed);
    assert.notEqual(maildirUid('y'.repeat(71)), hashed);
    assert.match(maildirUid('has space'), /^h\./);
    assert.match(maildirUid('caf\u00e9'), /^h\./);
  });

  test('host names are sanitised so they cannot end the base name', () => {
    assert.equal(sanitizeMaildirHostname('a/b:c,d'), 'a\\057b\\072c\\054d');
    assert.equal(sanitizeMaildirHostname(''), 'localhost');
  });
});

describe('Maildir path templates', () => {
  test('expands %u, %n, %d and %%', () => {
    assert.equal(maildirPathFromTemplate('/var/vmail/%d/%n/Maildir', 'alice@example.org'), '/var/vmail/example.org/alice/Maildir');
    assert.equal(maildirPathFromTemplate('/home/%u/Maildir', 'alice'), '/home/alice/Maildir');
    assert.equal(maildirPathFromTemplate('/m/%d/%n', 'alice'), '/m//alice');
    assert.equal(maildirPathFromTemplate('/m/%u/100%%', 'a@b.c'), '/m/a@b.c/100%');
    assert.equal(maildirPathFromTemplate('/m/%d/%n', 'x@y@example.org'), '/m/example.org/x@y');
  });

  test('rejects usernames that could leave the directory', () => {
    for (const bad of ['', '.', '..', '../etc', 'a/b', '/abs', '.hidden', 'a\0b', 'x@..', 'x@.evil', '@example.org', 'alice@', 'a@b/c']) {
      assert.throws(() => maildirPathFromTemplate('/var/vmail/%d/%n', bad), isStoreError('invalid'), JSON.stringify(bad));
    }
  });

  test('rejects unknown escapes', () => {
    assert.throws(() => maildirPathFromTemplate('/var/%x', 'alice'), isStoreError('invalid'));
    assert.throws(() => maildirPathFromTemplate('/var/%', 'alice'), isStoreError('invalid'));
  });

  test('a store refuses a traversal username and creates nothing', async () => {
    const base = join(scratch, 'traversal');
    const store = new MaildirStore({ pathFor: (m) => maildirPathFromTemplate(join(base, 'users', '%u'), m.username) });
    const evil: MailboxRef = { id: 'evil', username: '../../escaped' };
    await assert.rejects(store.deliver(evil, Readable.from([latin1('x\n')])), isStoreError('invalid'));
    const locks = new MemoryLockManager();
    await assert.rejects(store.open(evil, (await locks.acquire('evil'))!), isStoreError('invalid'));
    assert.deepEqual(await names(base), []);
    assert.deepEqual(await names(scratch).then((n) => n.filter((x) => x === 'escaped')), []);
  });
});

describe('MaildirStore on disk', () => {
  test('a missing Maildir is an empty mailbox; the first delivery creates tmp/ new/ cur/', async () => {
    const { root, store, locks } = await freshMaildir();
    assert.deepEqual(await listing(store, locks), []);
    assert.deepEqual(await names(root), []);
    await store.deliver(ALICE, Readable.from([latin1('Subject: x\r\n\r\nbody\r\n')]));
    assert.deepEqual(await names(root), ['cur', 'new', 'tmp']);
  });

  test('delivery writes the canonical form (CRLF) with S= equal to W=, by default', async () => {
    const { root, store, locks } = await freshMaildir();
    const input = latin1('Subject: x\nFrom: a@b\r\n\r\n.dot\nbare\rcr\r\r\nno end');
    const result = await store.deliver(ALICE, Readable.from([input]));
    const [name] = await names(join(root, 'new'));
    const onDisk = await readFile(join(root, 'new', name!));
    assert.deepEqual(onDisk, canonicalReference(input));
    assert.match(name!, new RegExp(`,S=${onDisk.length},W=${onDisk.length}$`));
    assert.equal(result.size, onDisk.length);
    const lease = (await locks.acquire('alice'))!;
    const drop = await store.open(ALICE, lease);
    const chunks: Buffer[] = [];
    for await (const c of await drop.read(0, { bodyLines: null })) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), onDisk);
    await drop.close();
  });

  test('with saveCrlf false, delivery writes LF line ends to new/ with S= and W= hints', async () => {
    const { root, store } = await freshMaildir({ saveCrlf: false });
    const input = latin1('Subject: x\r\nFrom: a@b\r\n\r\nline\r\nbare\rcr\r\r\nno end');
    const result = await store.deliver(ALICE, Readable.from([input]));
    const [name, ...rest] = await names(join(root, 'new'));
    assert.deepEqual(rest, []);
    assert.deepEqual(await names(join(root, 'tmp')), []);
    const match = /^(\d+)\.M(\d+)P(\d+)Q(\d+)\.mx\.example\.org,S=(\d+),W=(\d+)$/.exec(name!);
    assert.ok(match, name);
    assert.equal(Number(match[3]), process.pid);
    const onDisk = await readFile(join(root, 'new', name!));
    assert.equal(onDisk.toString('latin1'), 'Subject: x\nFrom: a@b\n\nline\nbare\rcr\r\r\nno end\n');
    assert.equal(Number(match[5]), onDisk.length);
    assert.equal(Number(match[6]), canonicalReference(input).length);
    assert.equal(result.size, canonicalReference(input).length);
    assert.equal(result.uid, name!.split(',')[0]);
    assert.equal((await stat(join(root, 'new', name!))).mode & 0o777, 0o600);
  });

  test('serves a tree written by Postfix and Dovecot in place, with the right sizes and order', async () => {
    const { root, store, locks } = await freshMaildir();
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(root, sub), { recursive: true });
    const m1 = latin1('Return-Path: <a@b>\nSubject: postfix\n\nplain LF body\n.\n');
    const m2 = latin1('Subject: dovecot with hints\n\nseen\n');
    const m3 = latin1('Subject: only S=\n\nx\ny\n');
    const m4 = latin1('Subject: edited\n\nthe hints lie about this one\n');
    const m5 = latin1('Subject: same second, later usecs\n\nz\n');
    const m6 = latin1('Subject: crlf on disk\r\n\r\nkept\r\n');
    const c = (b: Buffer) => canonicalReference(b).length;
    await writeFile(join(root, 'new', '1700000100.V803I44M512.mx'), m1);
    await writeFile(join(root, 'cur', `1700000000.M95P7Q1.mx,S=${m2.length},W=${c(m2)}:2,S`), m2);
    await writeFile(join(root, 'cur', `1700000000.M120P7Q2.mx,S=${m3.length}:2,RS`), m3);
    await writeFile(join(root, 'cur', `1700000050.M1P7Q3.mx,S=5,W=7:2,`), m4);
    await writeFile(join(root, 'new', `1700000000.M1000P7Q4.mx,S=${m5.length},W=${c(m5)}`), m5);
    await writeFile(join(root, 'new', '1700000200.M5P7Q5.mx'), m6);
    await writeFile(join(root, 'new', '.nfs000001'), 'not a message');
    await mkdir(join(root, 'cur', 'subdir'));
    await writeFile(join(root, 'tmp', '1700000300.M1P7Q6.mx'), 'still being written');

    const before = store.sizeComputations;
    const got = await listing(store, locks);
    assert.equal(store.sizeComputations - before, 4, 'm1, m3, m4 and m6 needed reading');
    assert.deepEqual(
      got.map((m) => m.uid),
      ['1700000000.M95P7Q1.mx', '1700000000.M120P7Q2.mx', '1700000000.M1000P7Q4.mx', '1700000050.M1P7Q3.mx', '1700000100.V803I44M512.mx', '1700000200.M5P7Q5.mx'],
    );
    const expected = [m2, m3, m5, m4, m1, m6].map((m) => canonicalReference(m));
    assert.deepEqual(
      got.map((m) => m.size),
      expected.map((b) => b.length),
    );
    assert.deepEqual(
      got.map((m) => m.bytes),
      expected,
    );
    assert.deepEqual(await store.stat(ALICE), { count: 6, octets: expected.reduce((s, b) => s + b.length, 0) });

    // The hints are now in the names, base names and flags untouched.
    assert.deepEqual(await names(join(root, 'cur')), [
      `1700000000.M120P7Q2.mx,S=${m3.length},W=${c(m3)}:2,RS`,
      `1700000000.M95P7Q1.mx,S=${m2.length},W=${c(m2)}:2,S`,
      `1700000050.M1P7Q3.mx,S=${m4.length},W=${c(m4)}:2,`,
      'subdir',
    ]);
    assert.deepEqual(await names(join(root, 'new')), [
      '.nfs000001',
      `1700000000.M1000P7Q4.mx,S=${m5.length},W=${c(m5)}`,
      `1700000100.V803I44M512.mx,S=${m1.length},W=${c(m1)}`,
      `1700000200.M5P7Q5.mx,S=${m6.length},W=${c(m6)}`,
    ]);
    assert.deepEqual(await names(join(root, 'tmp')), ['1700000300.M1P7Q6.mx']);

    // A second open, by this store or a new one, reads no message file to size it.
    const again = await listing(store, locks);
    assert.equal(store.sizeComputations - before, 4);
    const other = new MaildirStore({ pathFor: () => root });
    const third = await listing(other, locks);
    assert.equal(other.sizeComputations, 0);
    assert.deepEqual(again, got);
    assert.deepEqual(third, got);
  });

  test('an S= hint that disagrees with the file is ignored and corrected', async () => {
    const { root, store, locks } = await freshMaildir();
    await store.deliver(ALICE, Readable.from([latin1('Subject: x\n\nshort\n')]));
    const [name] = await names(join(root, 'new'));
    const edited = latin1('Subject: x\n\nsomeone appended\nlines\n');
    await writeFile(join(root, 'new', name!), edited);
    const before = store.sizeComputations;
    const [message] = await listing(store, locks);
    assert.equal(store.sizeComputations - before, 1);
    assert.equal(message!.size, canonicalReference(edited).length);
    assert.deepEqual(message!.bytes, canonicalReference(edited));
    const base = name!.split(',')[0]!;
    assert.deepEqual(await names(join(root, 'new')), [`${base},S=${edited.length},W=${canonicalReference(edited).length}`]);
  });

  test('a message with a long base name gets a hashed UIDL, stable across opens', async () => {
    const { root, store, locks } = await freshMaildir();
    await mkdir(join(root, 'cur'), { recursive: true });
    const base = `1700000000.M1P2Q3.${'very-long-host-name.'.repeat(5)}example`;
    await writeFile(join(root, 'cur', `${base}:2,S`), 'Subject: long\n\nx\n');
    const first = await listing(store, locks);
    const second = await listing(new MaildirStore({ pathFor: () => root }), locks);
    assert.match(first[0]!.uid, /^h\.[A-Za-z0-9_-]{27}$/);
    assert.equal(first[0]!.uid, maildirUid(base));
    assert.equal(second[0]!.uid, first[0]!.uid);
  });

  test('a long host name makes delivery UIDLs hashed but still unique and stable', async () => {
    const root = join(scratch, `box-${++counter}`);
    const store = new MaildirStore({ pathFor: () => root, hostname: 'h'.repeat(80) });
    const locks = new MemoryLockManager();
    const a = await store.deliver(ALICE, Readable.from([latin1('a\n')]));
    const b = await store.deliver(ALICE, Readable.from([latin1('b\n')]));
    assert.match(a.uid, /^h\./);
    assert.notEqual(a.uid, b.uid);
    assert.deepEqual(
      (await listing(store, locks)).map((m) => m.uid),
      [a.uid, b.uid],
    );
  });

  test('a message in both new/ and cur/ is listed once', async () => {
    const { root, store, locks } = await freshMaildir();
    for (const sub of ['new', 'cur']) await mkdir(join(root, sub), { recursive: true });
    await writeFile(join(root, 'new', '1700000000.M1P1Q1.mx'), 'Subject: dup\n\n');
    await writeFile(join(root, 'cur', '1700000000.M1P1Q1.mx:2,S'), 'Subject: dup\n\n');
    assert.equal((await listing(store, locks)).length, 1);
  });

  test('failed deliveries leave nothing in tmp/ or new/', async () => {
    const { root, store } = await freshMaildir();
    const big = Readable.from(
      (function* () {
        for (let i = 0; i < 100; i++) yield latin1('x'.repeat(1000) + '\n');
      })(),
      { objectMode: false },
    );
    await assert.rejects(store.deliver(ALICE, big, { maxSize: 20_000 }), isStoreError('too-large'));
    const failing = new Readable({ read() {} });
    failing.push(latin1('Subject: x\n\npartial'));
    setTimeout(() => failing.destroy(new Error('reset')), 10);
    await assert.rejects(store.deliver(ALICE, failing), isStoreError('backend'));
    const stalled = new Readable({ read() {} });
    stalled.push(latin1('Subject: x\n\npartial'));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(store.deliver(ALICE, stalled, { signal: controller.signal }), isStoreError('backend'));
    assert.deepEqual(await names(join(root, 'tmp')), []);
    assert.deepEqual(await names(join(root, 'new')), []);
  });

  test('a message renamed by another agent after open is still read and deleted', async () => {
    const { root, store, locks } = await freshMaildir();
    await store.deliver(ALICE, Readable.from([latin1('Subject: moved\n\nbody\n')]));
    await store.deliver(ALICE, Readable.from([latin1('Subject: stays\n\nbody\n')]));
    const lease = (await locks.acquire(ALICE.id))!;
    const drop = await store.open(ALICE, lease);
    const name = (await names(join(root, 'new'))).find((n) => n.startsWith(`${drop.messages[0]!.uid},`));
    // An IMAP server marks it seen: new/ -> cur/ with flags.
    await rename(join(root, 'new', name!), join(root, 'cur', `${name}:2,S`));
    assert.equal((await collect(await drop.read(0, { bodyLines: null }))).toString('latin1'), 'Subject: moved\r\n\r\nbody\r\n');
    await drop.commit([0]);
    assert.deepEqual(await names(join(root, 'cur')), []);
    assert.equal((await names(join(root, 'new'))).length, 1);
  });

  test('a small message whose file changed size after open: read rejects not-found before any byte', async () => {
    const { root, store, locks } = await freshMaildir();
    await store.deliver(ALICE, Readable.from([latin1('Subject: a\n\nshort\n')]));
    await store.deliver(ALICE, Readable.from([latin1('Subject: b\n\nshort\n')]));
    const lease = (await locks.acquire(ALICE.id))!;
    const drop = await store.open(ALICE, lease);
    const files = await names(join(root, 'new'));
    const grown = files.find((n) => n.startsWith(`${drop.messages[0]!.uid},`))!;
    const shrunk = files.find((n) => n.startsWith(`${drop.messages[1]!.uid},`))!;
    await writeFile(join(root, 'new', grown), 'Subject: a\n\nlonger than before\n');
    await writeFile(join(root, 'new', shrunk), 'S\n');
    for (const index of [0, 1]) {
      await assert.rejects(drop.read(index, { bodyLines: null }), (error: unknown) => {
        assert.ok(isStoreError('not-found')(error));
        assert.match((error as Error).message, /changed on disk/);
        return true;
      });
    }
    await drop.close();
  });

  test('openStoredSync reads the file as stored, in the caller\'s chunks, and notices a changed, moved or closed one', async () => {
    const { root, store, locks } = await freshMaildir({ saveCrlf: false });
    const texts = ['Subject: a\n\n.dot line\nand more text than one chunk holds\n', 'Subject: b\n\nshort\n', 'Subject: c\n\nshort\n', 'Subject: d\n\nmoved\n'];
    for (const t of texts) await store.deliver(ALICE, Readable.from([latin1(t)]));
    const lease = (await locks.acquire(ALICE.id))!;
    const drop = await store.open(ALICE, lease);
    const readAll = (index: number, room: number): Buffer => {
      const reader = drop.openStoredSync(index);
      assert.ok(reader, 'the file is where the listing saw it');
      const parts: Buffer[] = [];
      const target = Buffer.alloc(room + 1);
      try {
        while (!reader.done) parts.push(Buffer.from(target.subarray(0, reader.read(target))));
      } finally {
        reader.close();
        reader.close();
      }
      return Buffer.concat(parts);
    };
    // LF on disk (saveCrlf false): the stored bytes, not the canonical ones; any chunk size.
    for (const room of [1, 7, 64, 4096]) assert.equal(readAll(0, room).toString('latin1'), texts[0]);
    const files = await names(join(root, 'new'));
    const file = (index: number): string => files.find((n) => n.startsWith(`${drop.messages[index]!.uid},`))!;
    await writeFile(join(root, 'new', file(1)), 'Subject: b\n\nlonger than before\n');
    await writeFile(join(root, 'new', file(2)), 'S\n');
    for (const index of [1, 2]) {
      for (const room of [3, 4096]) {
        assert.throws(() => readAll(index, room), (error: unknown) => {
          assert.ok(isStoreError('not-found')(error));
          assert.match((error as Error).message, /changed on disk/);
          return true;
        });
      }
    }
    // Moved by another agent: undefined, and read() finds it.
    await rename(join(root, 'new', file(3)), join(root, 'cur', `${file(3)}:2,S`));
    assert.equal(drop.openStoredSync(3), undefined);
    await drop.close();
    assert.throws(() => drop.openStoredSync(0), isStoreError('invalid'));
  });

  test('a message deleted by someone else: read rejects not-found, commit still succeeds', async () => {
    const { root, store, locks } = await freshMaildir();
    await store.deliver(ALICE, Readable.from([latin1('Subject: gone\n\n')]));
    await store.deliver(ALICE, Readable.from([latin1('Subject: kept\n\n')]));
    await store.deliver(ALICE, Readable.from([latin1('Subject: deleted\n\n')]));
    const lease = (await locks.acquire(ALICE.id))!;
    const drop = await store.open(ALICE, lease);
    const first = (await names(join(root, 'new'))).find((n) => n.startsWith(`${drop.messages[0]!.uid},`));
    await unlink(join(root, 'new', first!));
    await assert.rejects(drop.read(0, { bodyLines: null }), (error: unknown) => {
      assert.ok(isStoreError('not-found')(error));
      assert.equal((error as StoreError).temporary, false);
      return true;
    });
    await drop.commit([0, 2]);
    const left = await listing(store, locks);
    assert.deepEqual(
      left.map((m) => m.bytes.toString('latin1')),
      ['Subject: kept\r\n\r\n'],
    );
  });

  test('a 50 MB message is written and read without holding it in memory', async () => {
    const { root, store, locks } = await freshMaildir();
    const line = latin1(`${'0123456789abcdef'.repeat(4)}\n`);
    const crlfLine = latin1(`${'0123456789abcdef'.repeat(4)}\r\n`);
    const lines = Math.ceil((50 * 1024 * 1024) / line.length);
    const perChunk = 1000;
    const sampleEvery = 64;
    const expected = createHash('sha256');
    expected.update('Subject: huge\r\n\r\n');
    for (let i = 0; i < lines; i++) expected.update(crlfLine);
    const expectedSize = 'Subject: huge\r\n\r\n'.length + lines * crlfLine.length;

    const baseline = await liveMemory();
    let peak = baseline;
    let samples = 0;
    const source = Readable.from(
      (async function* () {
        yield latin1('Subject: huge\n\n');
        for (let i = 0, k = 0; i < lines; i += perChunk, k++) {
          if (k % sampleEvery === sampleEvery - 1) {
            peak = Math.max(peak, await liveMemory());
            samples++;
          }
          yield Buffer.concat(Array.from({ length: Math.min(perChunk, lines - i) }, () => line));
        }
      })(),
      { objectMode: false },
    );
    const result = await store.deliver(ALICE, source);
    assert.equal(result.size, expectedSize);
    const [name] = await names(join(root, 'new'));
    // Stored in canonical form (CRLF) by default.
    assert.equal((await stat(join(root, 'new', name!))).size, expectedSize);

    const lease = (await locks.acquire(ALICE.id))!;
    const drop = await store.open(ALICE, lease);
    assert.equal(drop.messages[0]!.size, expectedSize);
    const hash = createHash('sha256');
    let length = 0;
    let chunks = 0;
    for await (const chunk of await drop.read(0, { bodyLines: null })) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (++chunks % sampleEvery === 0) {
        peak = Math.max(peak, await liveMemory());
        samples++;
      }
    }
    assert.equal(length, expectedSize);
    assert.equal(hash.digest('hex'), expected.digest('hex'));
    const top = await collect(await drop.read(0, { bodyLines: 3 }));
    assert.equal(top.toString('latin1'), `Subject: huge\r\n\r\n${crlfLine.toString('latin1').repeat(3)}`);
    await drop.close();
    assert.ok(samples >= 20, `only ${samples} memory samples`);
    assert.ok(peak - baseline < 20 * 1024 * 1024, `live memory grew by ${((peak - baseline) / 1048576).toFixed(1)} MiB`);
  });
});

/**
 * The behaviour every MailStore backend must show, as node:test blocks. A backend's test file
 * calls `storeConformance('name', makeStore)`; see the package README.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { Lease, LockManager } from '@postern/locks';
import type { StoreError } from './errors.js';
import { canonicalReference, topReference } from './reference.js';
import type { MailboxRef, Maildrop, MailStore } from './types.js';

export { canonicalReference, storedLfReference, topReference } from './reference.js';

export interface ConformanceHarness {
  /** A store over empty storage of its own. */
  readonly store: MailStore;
  /** The lock manager sessions take maildrop leases from (key: `MailboxRef.id`). */
  readonly locks: LockManager;
  /** Removes the storage. */
  cleanup(): Promise<void>;
  /**
   * A second store instance over the same storage, as a restarted process sees it. Without it
   * the restart checks use `store` again.
   */
  reopen?(): Promise<MailStore>;
}

const ALICE: MailboxRef = { id: 'conformance-alice', username: 'alice@example.org' };
const BOB: MailboxRef = { id: 'conformance-bob', username: 'bob@example.org' };

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Messages in every shape the line-end rules have to get right. */
export const SAMPLE_MESSAGES: ReadonlyArray<{ readonly name: string; readonly bytes: Buffer }> = [
  { name: 'LF only', bytes: latin1('Subject: lf\nFrom: a@example.org\n\nbody one\nbody two\n') },
  { name: 'CRLF', bytes: latin1('Subject: crlf\r\nFrom: a@example.org\r\n\r\nbody one\r\nbody two\r\n') },
  { name: 'mixed line ends', bytes: latin1('Subject: mixed\r\nX: y\n\r\nline\nline\r\nline\n') },
  { name: 'no trailing newline', bytes: latin1('Subject: open\n\nlast line without end') },
  { name: 'no trailing newline after CRLF lines', bytes: latin1('Subject: open\r\n\r\nend') },
  { name: 'dot lines', bytes: latin1('Subject: dots\n\n.\n..foo\n.bar\n...\n.\r\nend\n') },
  { name: '8-bit bytes', bytes: Buffer.concat([latin1('Subject: 8bit\n\n'), Buffer.from([0xe9, 0xff, 0x80, 0xc3, 0xa9, 0x0a])]) },
  { name: '990-character lines', bytes: latin1(`Subject: long\n\n${'x'.repeat(990)}\n${'y'.repeat(990)}\r\n${'z'.repeat(990)}`) },
  { name: 'bare CR', bytes: latin1('Subject: cr\n\na\rb\n\r\rc\r\n\r') },
  { name: 'CR CR LF', bytes: latin1('Subject: crcrlf\r\r\n\r\nx\r\r\n\r\r\r\n') },
  { name: 'NUL and control bytes', bytes: Buffer.from([0x53, 0x3a, 0x20, 0x00, 0x0a, 0x0a, 0x01, 0x02, 0x0d, 0x00, 0x0a, 0x7f]) },
  { name: 'headers only', bytes: latin1('Subject: only headers\nX-A: b\n') },
  { name: 'blank lines only', bytes: latin1('\n\n\r\n\n') },
  { name: 'single LF', bytes: latin1('\n') },
  { name: 'empty', bytes: Buffer.alloc(0) },
];

function sourceOf(bytes: Buffer, chunkSize = 16 * 1024): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  return Readable.from(chunks, { objectMode: false });
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

function isStoreError(code: StoreError['code']): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as Error).name, 'StoreError', `expected a StoreError, got ${String(error)}`);
    assert.equal((error as StoreError).code, code);
    return true;
  };
}

async function lease(locks: LockManager, mailbox: MailboxRef): Promise<Lease> {
  const held = await locks.acquire(mailbox.id);
  assert.ok(held, `lock on ${mailbox.id} should be free`);
  return held;
}

async function openDrop(store: MailStore, locks: LockManager, mailbox: MailboxRef): Promise<{ drop: Maildrop; lease: Lease }> {
  const l = await lease(locks, mailbox);
  const drop = await store.open(mailbox, l);
  return { drop, lease: l };
}

/** Opens, reads every message whole, closes. */
async function snapshot(store: MailStore, locks: LockManager, mailbox: MailboxRef): Promise<Array<{ uid: string; size: number; bytes: Buffer }>> {
  const { drop } = await openDrop(store, locks, mailbox);
  try {
    const out = [];
    for (let i = 0; i < drop.messages.length; i++) {
      const meta = drop.messages[i]!;
      out.push({ uid: meta.uid, size: meta.size, bytes: await collect(await drop.read(i, { bodyLines: null })) });
    }
    return out;
  } finally {
    await drop.close();
  }
}

async function deliverText(store: MailStore, mailbox: MailboxRef, text: string): Promise<string> {
  return (await store.deliver(mailbox, sourceOf(latin1(text)))).uid;
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Live memory after a full collection: garbage waiting for the collector is not retention. */
function memoryInUse(): number {
  gc();
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/** A big LF message generated line by line, and the hash and length of its canonical form. */
function bigMessage(totalBytes: number): { source: () => Readable; canonicalLength: number; canonicalSha256: string; pulled: () => number } {
  const line = (n: number): string => `line ${String(n).padStart(8, '0')} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2)}`;
  const lineCount = Math.ceil(totalBytes / (line(0).length + 1));
  const hash = createHash('sha256');
  let canonicalLength = 0;
  const header = 'Subject: big\r\nFrom: a@example.org\r\n\r\n';
  hash.update(header);
  canonicalLength += header.length;
  for (let n = 0; n < lineCount; n++) {
    const l = line(n) + '\r\n';
    hash.update(l);
    canonicalLength += l.length;
  }
  let pulled = 0;
  function* chunks(): Generator<Buffer> {
    let pending = 'Subject: big\nFrom: a@example.org\n\n';
    for (let n = 0; n < lineCount; n++) {
      pending += line(n) + '\n';
      if (pending.length >= 64 * 1024) {
        pulled++;
        yield latin1(pending);
        pending = '';
      }
    }
    pulled++;
    yield latin1(pending);
  }
  return {
    source: () => Readable.from(chunks(), { objectMode: false }),
    canonicalLength,
    canonicalSha256: hash.digest('hex'),
    pulled: () => pulled,
  };
}

/**
 * The store stopped reading a big message after a few chunks and left the source to its caller,
 * who can still drain it (an intake reads to the end of DATA).
 */
async function assertStoppedEarly(big: ReturnType<typeof bigMessage>, source: Readable): Promise<void> {
  const pulled = big.pulled();
  assert.ok(pulled < 10, `read ${pulled} chunks of 64 KiB past a 100 kB limit`);
  assert.equal(source.destroyed, false);
  const drained = new Promise((resolve) => source.once('end', resolve));
  source.resume();
  await drained;
  assert.ok(big.pulled() > pulled);
}

/** Registers the conformance tests for one backend. `makeStore` is called once per test. */
export function storeConformance(name: string, makeStore: () => Promise<ConformanceHarness>): void {
  async function withStore(fn: (h: ConformanceHarness) => Promise<void>): Promise<void> {
    const h = await makeStore();
    try {
      await fn(h);
    } finally {
      await h.store.close?.();
      await h.cleanup();
    }
  }

  describe(`MailStore conformance: ${name}`, () => {
    test('a mailbox nobody delivered to opens empty', () =>
      withStore(async ({ store, locks }) => {
        const { drop, lease: l } = await openDrop(store, locks, ALICE);
        assert.deepEqual(drop.messages, []);
        await drop.close();
        assert.equal(l.held(), false);
        assert.deepEqual(await store.stat(ALICE), { count: 0, octets: 0 });
      }));

    test('deliver then open lists the exact canonical size and reads the canonical bytes', () =>
      withStore(async ({ store, locks }) => {
        const delivered = [];
        for (const sample of SAMPLE_MESSAGES) {
          const result = await store.deliver(ALICE, sourceOf(sample.bytes, 3));
          const canonical = canonicalReference(sample.bytes);
          assert.equal(result.size, canonical.length, `delivery size of "${sample.name}"`);
          delivered.push({ ...result, canonical, name: sample.name });
        }
        const listed = await snapshot(store, locks, ALICE);
        assert.equal(listed.length, delivered.length);
        let octets = 0;
        for (const [i, d] of delivered.entries()) {
          const got = listed[i]!;
          assert.equal(got.uid, d.uid, `uid of "${d.name}"`);
          assert.equal(got.size, d.canonical.length, `LIST size of "${d.name}"`);
          assert.deepEqual(got.bytes, d.canonical, `bytes of "${d.name}"`);
          octets += d.canonical.length;
        }
        assert.deepEqual(await store.stat(ALICE), { count: delivered.length, octets });
      }));

    test('openStoredSync, where offered, gives bytes whose canonical form is what read() gives', () =>
      withStore(async ({ store, locks }) => {
        for (const sample of SAMPLE_MESSAGES) await store.deliver(ALICE, sourceOf(sample.bytes, 5));
        const { drop } = await openDrop(store, locks, ALICE);
        try {
          for (let index = 0; index < drop.messages.length; index++) {
            const reader = drop.openStoredSync?.(index);
            if (reader === undefined) continue;
            const parts: Buffer[] = [];
            const target = Buffer.alloc(8);
            try {
              while (!reader.done) parts.push(Buffer.from(target.subarray(0, reader.read(target))));
            } finally {
              reader.close();
            }
            const read = await collect(await drop.read(index, { bodyLines: null }));
            assert.deepEqual(canonicalReference(Buffer.concat(parts)), read, `message ${index}`);
            assert.equal(read.length, drop.messages[index]!.size);
          }
        } finally {
          await drop.close();
        }
      }));

    test('canonical bytes delivered are read back unchanged', () =>
      withStore(async ({ store, locks }) => {
        const canonicals = SAMPLE_MESSAGES.map((s) => canonicalReference(s.bytes));
        for (const bytes of canonicals) {
          const result = await store.deliver(ALICE, sourceOf(bytes, 1));
          assert.equal(result.size, bytes.length);
        }
        const listed = await snapshot(store, locks, ALICE);
        assert.deepEqual(
          listed.map((m) => m.bytes),
          canonicals,
        );
        assert.deepEqual(
          listed.map((m) => m.size),
          canonicals.map((b) => b.length),
        );
      }));

    test('a 5 MB message is delivered and read as a stream', () =>
      withStore(async ({ store, locks }) => {
        const big = bigMessage(5 * 1024 * 1024);
        const result = await store.deliver(ALICE, big.source());
        assert.equal(result.size, big.canonicalLength);
        const { drop } = await openDrop(store, locks, ALICE);
        try {
          assert.equal(drop.messages[0]!.size, big.canonicalLength);
          const baseline = memoryInUse();
          let peak = baseline;
          let largestChunk = 0;
          let length = 0;
          const hash = createHash('sha256');
          let chunks = 0;
          for await (const chunk of await drop.read(0, { bodyLines: null })) {
            const bytes = chunk as Buffer;
            hash.update(bytes);
            length += bytes.length;
            largestChunk = Math.max(largestChunk, bytes.length);
            if (++chunks % 8 === 0) peak = Math.max(peak, memoryInUse());
          }
          assert.equal(length, big.canonicalLength);
          assert.equal(hash.digest('hex'), big.canonicalSha256);
          assert.ok(largestChunk <= 1024 * 1024, `chunks should be small, saw one of ${largestChunk} octets`);
          assert.ok(peak - baseline < 3 * 1024 * 1024, `memory grew by ${peak - baseline} octets while reading`);
        } finally {
          await drop.close();
        }
      }));

    test('TOP gives the headers, the blank line and n body lines', () =>
      withStore(async ({ store, locks }) => {
        const messages = [
          latin1('Subject: t\nFrom: a@example.org\n\nb1\nb2\nb3\nb4\nb5\n'),
          latin1('Subject: t\r\nFrom: a@example.org\r\n\r\nb1\r\n\r\nb3\r\n.\r\nb5'),
          latin1('Subject: headers only\nX: y\n'),
          latin1('Subject: empty body\n\n'),
          latin1('\nbody right away\nsecond\n'),
          latin1('Subject: t\n\n\n\nafter two blank body lines\n'),
          latin1('Subject: cr\r\r\n\r\nx\n'),
        ];
        for (const m of messages) await store.deliver(ALICE, sourceOf(m, 5));
        const { drop } = await openDrop(store, locks, ALICE);
        try {
          for (const [i, m] of messages.entries()) {
            const canonical = canonicalReference(m);
            for (const n of [0, 1, 2, 3, 5, 6, 99_999_999]) {
              const got = await collect(await drop.read(i, { bodyLines: n }));
              assert.deepEqual(got, topReference(canonical, n), `TOP ${i + 1} ${n}`);
            }
          }
          const first = canonicalReference(messages[0]!);
          assert.equal(
            (await collect(await drop.read(0, { bodyLines: 0 }))).toString('latin1'),
            'Subject: t\r\nFrom: a@example.org\r\n\r\n',
          );
          assert.deepEqual(await collect(await drop.read(0, { bodyLines: 99_999_999 })), first);
          assert.deepEqual(await collect(await drop.read(0, { bodyLines: null })), first);
        } finally {
          await drop.close();
        }
      }));

    test('TOP of a big message stops early and the message reads whole afterwards', () =>
      withStore(async ({ store, locks }) => {
        const big = bigMessage(2 * 1024 * 1024);
        await store.deliver(ALICE, big.source());
        const { drop } = await openDrop(store, locks, ALICE);
        try {
          const top = (await collect(await drop.read(0, { bodyLines: 2 }))).toString('latin1');
          assert.match(top, /^Subject: big\r\nFrom: a@example\.org\r\n\r\nline 00000000 [^\r\n]*\r\nline 00000001 [^\r\n]*\r\n$/);
          const hash = createHash('sha256');
          for await (const chunk of await drop.read(0, { bodyLines: null })) hash.update(chunk as Buffer);
          assert.equal(hash.digest('hex'), big.canonicalSha256);
        } finally {
          await drop.close();
        }
      }));

    test('a reader may stop early; the maildrop still commits', () =>
      withStore(async ({ store, locks }) => {
        const big = bigMessage(1024 * 1024);
        await store.deliver(ALICE, big.source());
        await deliverText(store, ALICE, 'Subject: small\n\nx\n');
        const { drop } = await openDrop(store, locks, ALICE);
        const stream = await drop.read(0, { bodyLines: null });
        for await (const _chunk of stream) break;
        assert.ok(stream.destroyed);
        await drop.commit([1]);
        const after = await snapshot(store, locks, ALICE);
        assert.equal(after.length, 1);
        assert.equal(after[0]!.size, big.canonicalLength);
      }));

    test('uids are printable, unique and stable across re-opens and a restarted store', async () => {
      const h = await makeStore();
      try {
        const delivered: string[] = [];
        for (let i = 0; i < 12; i++) delivered.push(await deliverText(h.store, ALICE, `Subject: ${i}\n\nbody ${i}\n`));
        const first = (await snapshot(h.store, h.locks, ALICE)).map((m) => m.uid);
        const second = (await snapshot(h.store, h.locks, ALICE)).map((m) => m.uid);
        assert.deepEqual(first, delivered);
        assert.deepEqual(second, first);
        assert.equal(new Set(first).size, first.length);
        for (const uid of first) assert.match(uid, /^[\x21-\x7e]{1,70}$/);
        const restarted = h.reopen ? await h.reopen() : h.store;
        try {
          const third = await snapshot(restarted, h.locks, ALICE);
          assert.deepEqual(
            third.map((m) => m.uid),
            first,
          );
          assert.equal(third[11]!.bytes.toString('latin1'), 'Subject: 11\r\n\r\nbody 11\r\n');
          // A uid is never given to a different message later.
          const next = await deliverText(restarted, ALICE, 'Subject: later\n\nx\n');
          assert.ok(!first.includes(next));
        } finally {
          if (restarted !== h.store) await restarted.close?.();
        }
      } finally {
        await h.store.close?.();
        await h.cleanup();
      }
    });

    test('sequential deliveries list in delivery order, and the order is stable', () =>
      withStore(async ({ store, locks }) => {
        const uids: string[] = [];
        for (let i = 0; i < 30; i++) uids.push(await deliverText(store, ALICE, `Subject: ${i}\n\n${i}\n`));
        const listed = await snapshot(store, locks, ALICE);
        assert.deepEqual(
          listed.map((m) => m.uid),
          uids,
        );
        assert.deepEqual(
          listed.map((m) => m.bytes.toString('latin1')),
          uids.map((_, i) => `Subject: ${i}\r\n\r\n${i}\r\n`),
        );
      }));

    test('commit deletes exactly the chosen messages and releases the lock', () =>
      withStore(async ({ store, locks }) => {
        const uids: string[] = [];
        for (let i = 0; i < 5; i++) uids.push(await deliverText(store, ALICE, `Subject: ${i}\n\n${i}\n`));
        const { drop, lease: l } = await openDrop(store, locks, ALICE);
        await drop.commit([1, 3, 3]);
        assert.equal(l.held(), false);
        await drop.commit([1, 3]);
        await drop.close();
        const left = await snapshot(store, locks, ALICE);
        assert.deepEqual(
          left.map((m) => m.uid),
          [uids[0], uids[2], uids[4]],
        );
        const octets = left.reduce((sum, m) => sum + m.size, 0);
        assert.deepEqual(await store.stat(ALICE), { count: 3, octets });
      }));

    test('commit with nothing deleted changes nothing', () =>
      withStore(async ({ store, locks }) => {
        await deliverText(store, ALICE, 'Subject: a\n\na\n');
        const { drop, lease: l } = await openDrop(store, locks, ALICE);
        await drop.commit([]);
        assert.equal(l.held(), false);
        assert.equal((await snapshot(store, locks, ALICE)).length, 1);
      }));

    test('close deletes nothing and releases the lock; commit after close rejects', () =>
      withStore(async ({ store, locks }) => {
        for (let i = 0; i < 3; i++) await deliverText(store, ALICE, `Subject: ${i}\n\n${i}\n`);
        const { drop, lease: l } = await openDrop(store, locks, ALICE);
        await drop.close();
        await drop.close();
        assert.equal(l.held(), false);
        await assert.rejects(drop.commit([0]), isStoreError('invalid'));
        await assert.rejects(drop.read(0, { bodyLines: null }), isStoreError('invalid'));
        assert.equal((await snapshot(store, locks, ALICE)).length, 3);
      }));

    test('commit with a lost lease rejects and deletes nothing', () =>
      withStore(async ({ store, locks }) => {
        for (let i = 0; i < 3; i++) await deliverText(store, ALICE, `Subject: ${i}\n\n${i}\n`);
        const { drop, lease: l } = await openDrop(store, locks, ALICE);
        await l.release();
        await assert.rejects(drop.commit([0, 1, 2]), (error: unknown) => {
          isStoreError('lock-lost')(error);
          assert.equal((error as StoreError).temporary, true);
          return true;
        });
        await drop.close();
        assert.equal((await snapshot(store, locks, ALICE)).length, 3);
      }));

    test('open with a lease that is no longer held rejects', () =>
      withStore(async ({ store, locks }) => {
        const l = await lease(locks, ALICE);
        await l.release();
        await assert.rejects(store.open(ALICE, l), isStoreError('lock-lost'));
      }));

    test('a delivery while a maildrop is open does not change its snapshot', () =>
      withStore(async ({ store, locks }) => {
        const a = await deliverText(store, ALICE, 'Subject: a\n\na\n');
        const b = await deliverText(store, ALICE, 'Subject: b\n\nb\n');
        const { drop } = await openDrop(store, locks, ALICE);
        const before = drop.messages.map((m) => ({ ...m }));
        const c = await deliverText(store, ALICE, 'Subject: c\n\nc\n');
        assert.deepEqual(
          drop.messages.map((m) => ({ ...m })),
          before,
        );
        assert.equal(drop.messages.length, 2);
        assert.equal((await collect(await drop.read(1, { bodyLines: null }))).toString('latin1'), 'Subject: b\r\n\r\nb\r\n');
        await drop.commit([0]);
        assert.deepEqual(
          (await snapshot(store, locks, ALICE)).map((m) => m.uid),
          [b, c],
        );
        assert.notEqual(a, c);
      }));

    test('read rejects an index outside the snapshot and a bad line count', () =>
      withStore(async ({ store, locks }) => {
        await deliverText(store, ALICE, 'Subject: a\n\na\n');
        const { drop } = await openDrop(store, locks, ALICE);
        try {
          for (const bad of [-1, 1, 0.5, Number.NaN]) {
            await assert.rejects(drop.read(bad, { bodyLines: null }), isStoreError('invalid'));
          }
          for (const bad of [-1, 0.5, Number.NaN]) {
            await assert.rejects(drop.read(0, { bodyLines: bad }), isStoreError('invalid'));
          }
          await assert.rejects(drop.commit([1]), isStoreError('invalid'));
        } finally {
          await drop.close();
        }
        assert.equal((await snapshot(store, locks, ALICE)).length, 1);
      }));

    test('an over-size delivery is rejected early and leaves nothing behind', () =>
      withStore(async ({ store, locks }) => {
        const big = bigMessage(4 * 1024 * 1024);
        const source = big.source();
        await assert.rejects(store.deliver(ALICE, source, { maxSize: 100_000 }), (error: unknown) => {
          isStoreError('too-large')(error);
          assert.equal((error as StoreError).temporary, false);
          return true;
        });
        await assertStoppedEarly(big, source);
        // The final CRLF the store adds counts: "abc" is 5 octets.
        await assert.rejects(store.deliver(ALICE, sourceOf(latin1('abc')), { maxSize: 4 }), isStoreError('too-large'));
        assert.deepEqual(await store.stat(ALICE), { count: 0, octets: 0 });
        assert.deepEqual(await snapshot(store, locks, ALICE), []);
        const fits = await store.deliver(ALICE, sourceOf(latin1('abc')), { maxSize: 5 });
        assert.equal(fits.size, 5);
        assert.equal((await snapshot(store, locks, ALICE)).length, 1);
      }));

    test('a failing source rejects the delivery and leaves nothing behind', () =>
      withStore(async ({ store, locks }) => {
        const source = new Readable({ read() {} });
        source.push(latin1('Subject: broken\n\npart one\n'));
        setTimeout(() => source.destroy(new Error('connection reset')), 5);
        await assert.rejects(store.deliver(ALICE, source), (error: unknown) => {
          isStoreError('backend')(error);
          assert.equal((error as StoreError).temporary, true);
          return true;
        });
        assert.deepEqual(await snapshot(store, locks, ALICE), []);
      }));

    test('an aborted delivery rejects and leaves nothing behind', () =>
      withStore(async ({ store, locks }) => {
        const source = new Readable({ read() {} });
        source.push(latin1('Subject: stalled\n\nwaiting for more\n'));
        const controller = new AbortController();
        setTimeout(() => controller.abort(new Error('client gone')), 5);
        await assert.rejects(store.deliver(ALICE, source, { signal: controller.signal }), (error: unknown) => {
          isStoreError('backend')(error);
          assert.equal((error as StoreError).temporary, true);
          return true;
        });
        assert.deepEqual(await snapshot(store, locks, ALICE), []);
        source.destroy();
      }));

    test('concurrent deliveries all land', () =>
      withStore(async ({ store, locks }) => {
        const texts = Array.from({ length: 40 }, (_, i) => `Subject: parallel ${i}\n\n${'x'.repeat(i * 997)}\n`);
        const results = await Promise.all(texts.map((t) => store.deliver(ALICE, sourceOf(latin1(t), 1000))));
        assert.equal(new Set(results.map((r) => r.uid)).size, texts.length);
        const listed = await snapshot(store, locks, ALICE);
        assert.equal(listed.length, texts.length);
        assert.deepEqual(
          listed.map((m) => m.bytes.toString('latin1')).sort(),
          texts.map((t) => canonicalReference(latin1(t)).toString('latin1')).sort(),
        );
        assert.deepEqual(
          new Set(listed.map((m) => m.uid)),
          new Set(results.map((r) => r.uid)),
        );
      }));

    test('quota: the message limit admits exactly that many, and room comes back after a deletion', () =>
      withStore(async ({ store, locks }) => {
        const quota = { maxMessages: 2 };
        await store.deliver(ALICE, sourceOf(latin1('Subject: 1\n\na\n')), { quota });
        await store.deliver(ALICE, sourceOf(latin1('Subject: 2\n\nb\n')), { quota });
        const source = sourceOf(latin1('Subject: 3\n\nc\n'));
        await assert.rejects(store.deliver(ALICE, source, { quota }), (error: unknown) => {
          isStoreError('over-quota')(error);
          assert.equal((error as StoreError).temporary, false);
          return true;
        });
        // Nothing was stored and the caller still owns the source.
        assert.equal(source.destroyed, false);
        source.resume();
        assert.equal((await store.stat(ALICE)).count, 2);
        assert.equal((await snapshot(store, locks, ALICE)).length, 2);
        // Other mailboxes, and deliveries without a quota, are not limited by it.
        await store.deliver(BOB, sourceOf(latin1('Subject: bob\n\nb\n')), { quota });
        await store.deliver(ALICE, sourceOf(latin1('Subject: no quota\n\nx\n')));
        await store.deliver(ALICE, sourceOf(latin1('Subject: zero is no limit\n\nx\n')), { quota: { maxMessages: 0, maxOctets: 0 } });
        assert.equal((await store.stat(ALICE)).count, 4);
        const { drop } = await openDrop(store, locks, ALICE);
        await drop.commit([0, 1, 2]);
        const fits = await store.deliver(ALICE, sourceOf(latin1('Subject: 5\n\ne\n')), { quota });
        assert.ok(fits.uid.length > 0);
        assert.equal((await store.stat(ALICE)).count, 2);
        // A backend's own quota count, where it has one, agrees with stat() after deliveries and a commit.
        if (store.quotaUsage) assert.deepEqual(await store.quotaUsage(ALICE), await store.stat(ALICE));
      }));

    test('quota: the octet limit counts canonical octets, and a message may fill it exactly', () =>
      withStore(async ({ store }) => {
        // 'Subject: q\n\n' + 8 x's + '\n' is 21 octets as received, 24 canonical (three CRLFs).
        const text = (c: string): Buffer => latin1(`Subject: q\n\n${c.repeat(8)}\n`);
        assert.equal(canonicalReference(text('a')).length, 24);
        const quota = { maxOctets: 48 };
        assert.equal((await store.deliver(ALICE, sourceOf(text('a'), 5), { quota })).size, 24);
        // 23 octets as received (one fewer LF converted) would fit a limit on received octets.
        await assert.rejects(store.deliver(ALICE, sourceOf(latin1('Subject: q\n\n12345678901\n')), { quota: { maxOctets: 48 } }), isStoreError('over-quota'));
        assert.deepEqual(await store.stat(ALICE), { count: 1, octets: 24 });
        assert.equal((await store.deliver(ALICE, sourceOf(text('b'), 7), { quota })).size, 24);
        assert.deepEqual(await store.stat(ALICE), { count: 2, octets: 48 });
        // Full: even the smallest message is refused.
        await assert.rejects(store.deliver(ALICE, sourceOf(latin1('x')), { quota }), isStoreError('over-quota'));
        assert.deepEqual(await store.stat(ALICE), { count: 2, octets: 48 });
      }));

    test('quota: a message that cannot fit is refused before it is read whole and leaves nothing behind', () =>
      withStore(async ({ store, locks }) => {
        const big = bigMessage(4 * 1024 * 1024);
        const source = big.source();
        await assert.rejects(store.deliver(ALICE, source, { quota: { maxOctets: 100_000 } }), isStoreError('over-quota'));
        await assertStoppedEarly(big, source);
        assert.deepEqual(await store.stat(ALICE), { count: 0, octets: 0 });
        assert.deepEqual(await snapshot(store, locks, ALICE), []);
        // The size limit is checked as well, and names itself.
        await assert.rejects(store.deliver(ALICE, sourceOf(latin1('abc')), { maxSize: 4, quota: { maxOctets: 1000 } }), isStoreError('too-large'));
      }));

    test('quota: concurrent deliveries cannot together pass a limit', () =>
      withStore(async ({ store, locks }) => {
        const deliverMany = (mailbox: MailboxRef, quota: { maxMessages?: number; maxOctets?: number }) =>
          Promise.allSettled(
            Array.from({ length: 24 }, (_, i) => store.deliver(mailbox, sourceOf(latin1(`Subject: race ${String(i).padStart(2, '0')}\n\n${'r'.repeat(100)}\n`), 7), { quota })),
          );
        const outcomes = await deliverMany(ALICE, { maxMessages: 5 });
        assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 5);
        for (const o of outcomes) if (o.status === 'rejected') isStoreError('over-quota')(o.reason);
        assert.equal((await snapshot(store, locks, ALICE)).length, 5);
        // Each message is 122 canonical octets: a 650-octet limit holds five.
        const byOctets = await deliverMany(BOB, { maxOctets: 650 });
        assert.equal(byOctets.filter((o) => o.status === 'fulfilled').length, 5);
        assert.deepEqual(await store.stat(BOB), { count: 5, octets: 610 });
      }));

    test('mailboxes are separate', () =>
      withStore(async ({ store, locks }) => {
        await deliverText(store, ALICE, 'Subject: for alice\n\na\n');
        await deliverText(store, BOB, 'Subject: for bob\n\nb\n');
        await deliverText(store, BOB, 'Subject: for bob 2\n\nb\n');
        const { drop } = await openDrop(store, locks, ALICE);
        await drop.commit([0]);
        const bob = await snapshot(store, locks, BOB);
        assert.deepEqual(
          bob.map((m) => m.bytes.toString('latin1')),
          ['Subject: for bob\r\n\r\nb\r\n', 'Subject: for bob 2\r\n\r\nb\r\n'],
        );
        assert.deepEqual(await store.stat(ALICE), { count: 0, octets: 0 });
      }));
  });
}

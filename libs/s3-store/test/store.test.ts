/**
 * The S3 store on one real redis-server and a real versitygw: leases, fencing, pending deletions
 * and the sweeper, orphans, rebuild, quota, TOP ranges, a 50 MB message, round trips.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pollUntil, redisCommand } from '@postern/testkit';
import { StoreError, type MailboxRef } from '@postern/mailstore';
import { Sweeper, rebuildIndex, type SweepReport } from '../src/index.js';
import { collect, leaseSuite, objectKeys, text } from './lease-suite.js';
import { makeRig, standaloneRedis, startBackends, stopBackends, type Backends, type Rig, type RigOptions } from './support.js';

let backends: Backends | undefined;
before(async () => {
  backends = await startBackends();
});
after(() => stopBackends(backends));

leaseSuite('standalone', () => ({ s3: backends!.s3Server, redis: standaloneRedis(backends!.redisServer) }));

const BOX: MailboxRef = { id: 'store-box', username: 'store@example.org' };

async function withRig(fn: (rig: Rig) => Promise<void>, options: RigOptions = {}): Promise<void> {
  const rig = makeRig(backends!.s3Server, standaloneRedis(backends!.redisServer), options);
  try {
    await fn(rig);
  } finally {
    await rig.close();
  }
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/**
 * What "bounded" means for a 50 MB message: never the message, well under it. Measured growth is
 * 7-9 MB on a quiet machine and up to 27 MB with the machine saturated (buffers drained later),
 * so the bound is 32 MB; a store that held the message would be past 50 MB.
 */
const BOUNDED = 32 * 1024 * 1024;

function memoryInUse(): number {
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/** `size` octets of LF text made line by line; canonical length and hash alongside. */
function generated(size: number, onChunk: (n: number) => void = () => {}): { source: () => Readable; canonicalLength: number; sha256: string } {
  const line = (n: number): string => `line ${String(n).padStart(9, '0')} ${'0123456789abcdef'.repeat(4)}\n`;
  const lines = Math.ceil(size / line(0).length);
  const hash = createHash('sha256');
  let canonicalLength = 0;
  for (let n = 0; n < lines; n++) {
    const l = line(n).replace('\n', '\r\n');
    hash.update(l);
    canonicalLength += l.length;
  }
  function* chunks(): Generator<Buffer> {
    let pending = '';
    let count = 0;
    for (let n = 0; n < lines; n++) {
      pending += line(n);
      if (pending.length >= 64 * 1024) {
        yield Buffer.from(pending, 'latin1');
        onChunk(++count);
        pending = '';
      }
    }
    if (pending) yield Buffer.from(pending, 'latin1');
  }
  return { source: () => Readable.from(chunks(), { objectMode: false }), canonicalLength, sha256: hash.digest('hex') };
}

/** A 30 MB message and a small one delivered, and the maildrop opened. */
async function bigAndSmall(rig: Rig): Promise<{ big: ReturnType<typeof generated>; drop: Awaited<ReturnType<Rig['store']['open']>> }> {
  const big = generated(30 * 1024 * 1024);
  await rig.store.deliver(BOX, big.source());
  await rig.store.deliver(BOX, text('Subject: small\n\nx\n'));
  const lease = await rig.locks.acquire(BOX.id);
  return { big, drop: await rig.store.open(BOX, lease!) };
}

describe('S3MailStore on standalone Redis', () => {
  test('a write never overwrites an object (If-None-Match: *)', () =>
    withRig(async (rig) => {
      const key = rig.store.objectKey(BOX.id, 'fixed-id');
      await rig.s3.put(key, 5, () => Buffer.from('first'));
      await assert.rejects(rig.s3.put(key, 6, () => Buffer.from('second')), (e: unknown) => e instanceof StoreError && e.code === 'backend');
      const { body } = await rig.s3.get(key);
      assert.equal((await collect(body)).toString(), 'first');
    }));

  test('a lapsed lease (Redis stalled past the TTL) aborts its signal; its commit deletes nothing; a new session sees everything', async () => {
    const redisProc = backends!.redisServer.proc;
    await withRig(
      async (rig) => {
        for (let i = 0; i < 2; i++) await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`));
        const lease = await rig.locks.acquire(BOX.id);
        assert.ok(lease);
        const drop = await rig.store.open(BOX, lease);
        const aborted = once(lease.signal, 'abort');
        redisProc.signal('SIGSTOP');
        try {
          await aborted;
        } finally {
          redisProc.signal('SIGCONT');
        }
        assert.match(String((lease.signal.reason as Error).message), /lapsed/);
        await assert.rejects(drop.commit([0, 1]), (e: unknown) => e instanceof StoreError && e.code === 'lock-lost');
        const other = rig.another();
        try {
          const next = await pollUntil('the lapsed lock to expire in Redis', 5_000, async () => (await other.locks.acquire(BOX.id)) ?? undefined);
          const seen = await other.store.open(BOX, next);
          assert.equal(seen.messages.length, 2);
          await seen.close();
          assert.equal((await objectKeys(rig, BOX.id)).length, 2);
        } finally {
          await other.close();
        }
      },
      { ttlMs: 400 },
    );
  });

  test('an empty poll is two script calls at the Redis server, and nothing else', () =>
    withRig(async (rig) => {
      const warm = await rig.locks.acquire(BOX.id);
      await (await rig.store.open(BOX, warm!)).commit([]);
      const port = backends!.redisServer.port;
      // Calls per command; commands a script runs count too, so compare the script calls.
      const calls = async (): Promise<Map<string, number>> => {
        const info = String(await redisCommand(port, ['INFO', 'commandstats']));
        return new Map([...info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
      };
      const before = await calls();
      const lease = await rig.locks.acquire(BOX.id);
      await (await rig.store.open(BOX, lease!)).commit([]);
      const after = await calls();
      const delta = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      assert.equal(delta('evalsha') + delta('eval'), 2);
      // Acquire runs GET, SET, HINCRBY, HGETALL; release runs GET, DEL; plus the INFO that read `before`.
      const inner = { get: 2, set: 1, hincrby: 1, hgetall: 1, del: 1, info: 1 };
      for (const [name, n] of Object.entries(inner)) assert.equal(delta(name), n, name);
      for (const name of after.keys()) if (!(name in inner) && name !== 'evalsha' && name !== 'eval') assert.equal(delta(name), 0, name);
    }));

  test('pending deletions survive an unreachable S3 and the sweeper finishes them', () =>
    withRig(
      async (rig) => {
        const uids = [];
        for (let i = 0; i < 3; i++) uids.push((await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`))).uid);
        const lease = await rig.locks.acquire(BOX.id);
        const drop = await rig.store.open(BOX, lease!);
        const s3proc = backends!.s3Server.proc;
        await s3proc.stop();
        try {
          // The commit needs Redis only; the deletion after it fails against the stopped S3.
          await drop.commit([0, 2]);
          await rig.store.settled();
          assert.deepEqual((await rig.redis.smembers(rig.index.keys(BOX.id).pending)).sort(), [uids[0], uids[2]]);
          assert.deepEqual(
            (await rig.index.listing(BOX.id)).map((m) => m.uid),
            [uids[1]],
          );
        } finally {
          await s3proc.start();
        }
        assert.equal((await objectKeys(rig, BOX.id)).length, 3, 'the objects are still in S3');
        const report = await new Sweeper({ store: rig.store, graceMs: 3_600_000 }).runOnce();
        assert.ok(report.pendingDeleted >= 2, JSON.stringify(report));
        assert.equal(report.pendingFailed, 0);
        assert.equal(report.orphansDeleted, 0);
        assert.equal(await rig.redis.exists(rig.index.keys(BOX.id).pending), 0);
        assert.deepEqual(await objectKeys(rig, BOX.id), [rig.store.objectKey(BOX.id, uids[1]!)]);
      },
      { retryDeadlineMs: 300 },
    ));

  test('the orphan sweep respects the grace period and never deletes an indexed or pending object', () =>
    withRig(async (rig) => {
      const kept = [];
      for (let i = 0; i < 3; i++) kept.push((await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`))).uid);
      // An orphan: PUT without index (a delivery that crashed before its index script).
      const orphanKey = rig.store.objectKey(BOX.id, 'orphan-0001');
      await rig.s3.put(orphanKey, 3, () => Buffer.from('x\r\n'));
      // A pending one: committed deleted, object still there.
      const pendingKey = rig.store.objectKey(BOX.id, 'pending-0001');
      await rig.s3.put(pendingKey, 3, () => Buffer.from('y\r\n'));
      await rig.redis.sadd(rig.index.keys(BOX.id).pending, 'pending-0001');
      const all = [...kept.map((u) => rig.store.objectKey(BOX.id, u)), orphanKey, pendingKey].sort();

      const young = await new Sweeper({ store: rig.store, graceMs: 3_600_000 }).sweepOrphans();
      assert.equal(young.orphansDeleted, 0, 'everything is younger than the grace period');
      assert.deepEqual(await objectKeys(rig, BOX.id), all);

      // Two hours later (a clock moved forward): only the orphan goes.
      const later = new Sweeper({ store: rig.store, graceMs: 3_600_000, now: () => Date.now() + 7_200_000 });
      const old = await later.sweepOrphans();
      assert.equal(old.orphansDeleted, 1);
      assert.deepEqual(await objectKeys(rig, BOX.id), all.filter((k) => k !== orphanKey));

      // While a session holds the maildrop (a rebuild may be indexing), nothing is swept.
      await rig.s3.put(orphanKey, 3, () => Buffer.from('x\r\n'));
      const lease = await rig.locks.acquire(BOX.id);
      assert.equal((await later.sweepOrphans()).orphansDeleted, 0);
      await lease!.release();
      assert.equal((await later.sweepOrphans()).orphansDeleted, 1);
    }));

  test('deliveries that PUT and index while the sweeper runs are never swept', () =>
    withRig(async (rig) => {
      const sweeper = new Sweeper({ store: rig.store, graceMs: 60_000 });
      let sweeping = true;
      let passes = 0;
      const loop = (async () => {
        while (sweeping) {
          const r = await sweeper.runOnce();
          assert.equal(r.orphansDeleted, 0);
          passes++;
        }
      })();
      const delivered = await Promise.all(
        Array.from({ length: 30 }, (_, i) => rig.store.deliver(BOX, text(`Subject: race ${i}\n\n${'r'.repeat(i * 101)}\n`))),
      );
      await pollUntil('two sweeps after the deliveries', 30_000, async () => (passes >= 2 ? true : undefined));
      sweeping = false;
      await loop;
      const lease = await rig.locks.acquire(BOX.id);
      const drop = await rig.store.open(BOX, lease!);
      assert.deepEqual(
        drop.messages.map((m) => m.uid),
        delivered.map((d) => d.uid).sort(),
      );
      for (let i = 0; i < drop.messages.length; i++) assert.equal((await collect(await drop.read(i, { bodyLines: null }))).length, drop.messages[i]!.size);
      await drop.close();
    }));

  test('sweeper loops in several processes: one takes each turn, and the orphan listing keeps its own interval', () =>
    withRig(async (rig) => {
      await rig.store.deliver(BOX, text('Subject: s\n\nx\n'));
      const other = rig.another();
      const a = new Sweeper({ store: rig.store, graceMs: 3_600_000 });
      const b = new Sweeper({ store: other.store, graceMs: 3_600_000 });
      try {
        const reports: SweepReport[] = [];
        let skips = 0;
        const handlers = { onReport: (r: SweepReport) => void reports.push(r), onSkip: () => void skips++ };
        a.start(150, handlers);
        b.start(150, handlers);
        await pollUntil('three turns and a skipped one', 20_000, async () => (reports.length >= 3 && skips >= 1 ? true : undefined));
        assert.equal(reports[0]!.scanned, 1, 'the first turn lists the bucket');
        for (const r of reports.slice(1)) assert.equal(r.scanned, 0, 'later turns within the orphan interval do not');
      } finally {
        await a.stop();
        await b.stop();
        await other.close();
      }
    }));

  test('rebuild restores the same listing and totals, keeps pending deletions out and raises the fence', () =>
    withRig(async (rig) => {
      for (let i = 0; i < 6; i++) await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${'b'.repeat(i * 50)}\n`));
      let lease = await rig.locks.acquire(BOX.id);
      let drop = await rig.store.open(BOX, lease!);
      await drop.commit([1]);
      await rig.store.settled();
      // A committed deletion whose object is still in S3 (DeleteObjects not done yet).
      lease = await rig.locks.acquire(BOX.id);
      drop = await rig.store.open(BOX, lease!);
      const pendingUid = drop.messages[0]!.uid;
      await rig.index.commit(BOX.id, lease!.token, lease!.fence, [pendingUid]);
      lease!.releasedByCommit();
      const listing = await rig.index.listing(BOX.id);
      const totals = await rig.store.stat(BOX);
      const fenceBefore = lease!.fence;

      // Refused while the maildrop is in use.
      const busy = await rig.locks.acquire(BOX.id);
      await assert.rejects(rebuildIndex(rig.store, rig.locks, BOX.id), /in use/);
      await busy!.release();

      // The index is lost (fence included); the pending set survived.
      const k = rig.index.keys(BOX.id);
      await rig.redis.del(k.idx, k.tot);
      assert.deepEqual(await rig.store.stat(BOX), { count: 0, octets: 0 });
      const report = await rebuildIndex(rig.store, rig.locks, BOX.id);
      assert.equal(report.listed, 5, 'five objects: four indexed before, one pending');
      assert.equal(report.added, 4);
      assert.deepEqual(await rig.index.listing(BOX.id), listing);
      assert.deepEqual(await rig.store.stat(BOX), totals);
      const after = await rig.locks.acquire(BOX.id);
      assert.ok(after!.fence > fenceBefore, `fence ${after!.fence} should exceed ${fenceBefore}`);
      assert.deepEqual(
        after!.takeListing(),
        listing,
      );
      await after!.release();
    }));

  test('over quota in the index script: nothing indexed, the object is removed', () =>
    withRig(async (rig) => {
      const quota = { maxMessages: 3 };
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => rig.store.deliver(BOX, text(`Subject: q${i}\n\nbody\n`), { quota })),
      );
      assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 3);
      for (const o of outcomes) if (o.status === 'rejected') assert.equal((o.reason as StoreError).code, 'over-quota');
      assert.equal((await rig.store.stat(BOX)).count, 3);
      assert.equal((await objectKeys(rig, BOX.id)).length, 3, 'no object left behind by a refused delivery');
    }));

  test('TOP of a large message fetches only a prefix; RETR fetches it whole', (t) =>
    withRig(async (rig) => {
      const big = generated(2 * 1024 * 1024);
      const header = 'Subject: big\n\n';
      const source = Readable.from(
        (async function* () {
          yield Buffer.from(header, 'latin1');
          yield* big.source();
        })(),
        { objectMode: false },
      );
      const { size } = await rig.store.deliver(BOX, source);
      const lease = await rig.locks.acquire(BOX.id);
      const drop = await rig.store.open(BOX, lease!);
      try {
        let before = rig.s3.stats.getBytes;
        const top = (await collect(await drop.read(0, { bodyLines: 3 }))).toString('latin1');
        assert.match(top, /^Subject: big\r\n\r\nline 000000000 [0-9a-f]+\r\nline 000000001 [0-9a-f]+\r\nline 000000002 [0-9a-f]+\r\n$/);
        assert.equal(rig.s3.stats.getBytes - before, 64 * 1024, 'one 64 KiB range');
        // Lines past the first range: more ranges, still not the whole message.
        before = rig.s3.stats.getBytes;
        const deep = await collect(await drop.read(0, { bodyLines: 2_000 }));
        assert.equal(deep.toString('latin1').split('\r\n').length - 1, 2 + 2_000);
        const fetched = rig.s3.stats.getBytes - before;
        t.diagnostic(`TOP 1 3 fetched 65536 octets, TOP 1 2000 fetched ${fetched}, of ${size}`);
        assert.ok(fetched > 64 * 1024 && fetched < size / 2, `fetched ${fetched} of ${size}`);
        before = rig.s3.stats.getBytes;
        const whole = await collect(await drop.read(0, { bodyLines: null }));
        assert.equal(whole.length, size);
        assert.equal(rig.s3.stats.getBytes - before, size);
      } finally {
        await drop.close();
      }
    }));

  test('in-order RETRs prefetch the next message; a single RETR costs one GET; an unused prefetch is dropped', () =>
    withRig(async (rig) => {
      const box: MailboxRef = { id: 'prefetch-box', username: 'prefetch@example.org' };
      for (let i = 0; i < 4; i++) await rig.store.deliver(box, text(`Subject: ${i}\n\nbody ${i}\n`));
      const read = async (drop: Awaited<ReturnType<typeof rig.store.open>>, i: number) =>
        (await collect(await drop.read(i, { bodyLines: null }))).toString('latin1');
      let lease = await rig.locks.acquire(box.id);
      let drop = await rig.store.open(box, lease!);
      let before = rig.s3.stats.requests;
      assert.match(await read(drop, 0), /body 0\r\n$/);
      assert.equal(rig.s3.stats.requests - before, 1, 'the first RETR does not prefetch');
      assert.match(await read(drop, 1), /body 1\r\n$/);
      assert.equal(rig.s3.stats.requests - before, 3, 'the second in-order RETR started the GET of the third');
      for (let i = 2; i < 4; i++) assert.match(await read(drop, i), new RegExp(`body ${i}\r\n$`));
      assert.equal(rig.s3.stats.requests - before, 4, 'four RETRs in order: four GETs in all');
      await drop.close();
      lease = await rig.locks.acquire(box.id);
      drop = await rig.store.open(box, lease!);
      before = rig.s3.stats.requests;
      assert.match(await read(drop, 2), /body 2\r\n$/);
      assert.equal(rig.s3.stats.requests - before, 1, 'one RETR: one GET');
      // Out of order after an in-order pair: the prefetched next one is dropped, the right one read.
      assert.match(await read(drop, 3), /body 3\r\n$/);
      assert.match(await read(drop, 0), /body 0\r\n$/);
      await drop.close();
    }));

  test('S3 down: deliveries and reads fail temporarily within the retry deadline; S3 dying mid-RETR errors the stream', () =>
    withRig(
      async (rig) => {
        const { big, drop } = await bigAndSmall(rig);
        const s3proc = backends!.s3Server.proc;
        try {
          const stream = await drop.read(0, { bodyLines: null });
          let received = 0;
          await assert.rejects(
            (async () => {
              for await (const chunk of stream) {
                if (received === 0) await s3proc.kill();
                received += (chunk as Buffer).length;
              }
            })(),
          );
          assert.ok(received < big.canonicalLength, `${received} octets arrived before the error`);
          assert.equal(stream.destroyed, true);
          const started = Date.now();
          await assert.rejects(drop.read(1, { bodyLines: null }), (e: unknown) => e instanceof StoreError && e.code === 'backend' && e.temporary);
          await assert.rejects(rig.store.deliver(BOX, text('Subject: later\n\ny\n')), (e: unknown) => e instanceof StoreError && e.code === 'backend' && e.temporary);
          assert.ok(Date.now() - started < 5_000, 'both gave up within their retry deadlines');
        } finally {
          await s3proc.start();
        }
        // Nothing was committed; the service works again without a restart.
        assert.equal((await collect(await drop.read(1, { bodyLines: null }))).toString('latin1'), 'Subject: small\r\n\r\nx\r\n');
        await drop.close();
        assert.equal((await rig.store.stat(BOX)).count, 2);
      },
      { retryDeadlineMs: 500 },
    ));

  test('S3 hung (SIGSTOP): a read fails temporarily by the request timeout; a stall mid-RETR errors the stream; a slow reader is not a stall', () =>
    withRig(
      async (rig) => {
        // A 30 MB upload takes longer than the 300 ms request timeout: a PUT's timeout grows with its size.
        const { big, drop } = await bigAndSmall(rig);
        const s3proc = backends!.s3Server.proc;
        try {
          // A slow reader (a client on a slow link): after the first chunk nothing is read for
          // three stall periods, then the rest arrives whole.
          const hash = createHash('sha256');
          let length = 0;
          for await (const chunk of await drop.read(0, { bodyLines: null })) {
            if (length === 0) await new Promise((resolve) => setTimeout(resolve, 1_200));
            hash.update(chunk as Buffer);
            length += (chunk as Buffer).length;
          }
          assert.equal(length, big.canonicalLength);
          assert.equal(hash.digest('hex'), big.sha256);

          const stream = await drop.read(0, { bodyLines: null });
          let received = 0;
          const started = Date.now();
          await assert.rejects(
            (async () => {
              for await (const chunk of stream) {
                if (received === 0) s3proc.signal('SIGSTOP');
                received += (chunk as Buffer).length;
              }
            })(),
          );
          assert.ok(received < big.canonicalLength);
          assert.ok(Date.now() - started < 10_000, `the stall was noticed after ${Date.now() - started} ms`);
          const t0 = Date.now();
          await assert.rejects(drop.read(1, { bodyLines: null }), (e: unknown) => e instanceof StoreError && e.code === 'backend' && e.temporary);
          assert.ok(Date.now() - t0 < 5_000, `a hung S3 failed the read after ${Date.now() - t0} ms`);
        } finally {
          s3proc.signal('SIGCONT');
        }
        assert.equal((await collect(await drop.read(1, { bodyLines: null }))).toString('latin1'), 'Subject: small\r\n\r\nx\r\n');
        await drop.close();
      },
      { retryDeadlineMs: 1_000, requestTimeoutMs: 300, readStallTimeoutMs: 400 },
    ));

  test('received times come from the ids', () =>
    withRig(async (rig) => {
      const before = Date.now();
      await rig.store.deliver(BOX, text('Subject: t\n\nx\n'));
      const lease = await rig.locks.acquire(BOX.id);
      const drop = await rig.store.open(BOX, lease!);
      const received = drop.messages[0]!.received!;
      assert.ok(received >= before && received <= Date.now(), `${received}`);
      await drop.close();
    }));

  test('Redis down between the PUT and the index: the delivery fails temporarily and leaves an orphan the sweeper removes', () =>
    withRig(async (rig) => {
      const redisProc = backends!.redisServer.proc;
      // The PUT needs S3 only; stop Redis once the object is written (index script next).
      const put = rig.s3.put.bind(rig.s3);
      rig.s3.put = async (...args) => {
        await put(...args);
        await redisProc.stop();
      };
      try {
        await assert.rejects(rig.store.deliver(BOX, text('Subject: lost index\n\nx\n')), (e: unknown) => e instanceof StoreError && e.code === 'backend' && e.temporary);
      } finally {
        rig.s3.put = put;
        await redisProc.start();
      }
      assert.equal((await objectKeys(rig, BOX.id)).length, 1, 'the object is in S3');
      await pollUntil('the client to reconnect', 10_000, async () => ((await rig.redis.ping()) === 'PONG' ? true : undefined));
      assert.deepEqual(await rig.store.stat(BOX), { count: 0, octets: 0 });
      const report = await new Sweeper({ store: rig.store, graceMs: 3_600_000, now: () => Date.now() + 7_200_000 }).runOnce();
      assert.equal(report.orphansDeleted, 1);
      assert.deepEqual(await objectKeys(rig, BOX.id), []);
    }));

  test('a 50 MB message is delivered and read back with bounded memory', (t) =>
    withRig(async (rig) => {
      let peak = 0;
      let peakAt = '';
      // Sampled as the store pulls the source (a 'data' listener would make the source flow on its own).
      const big = generated(50 * 1024 * 1024, (n) => {
        if (n % 64 !== 0) return;
        const m = memoryInUse();
        if (m > peak) {
          peak = m;
          peakAt = `chunk ${n}: ${JSON.stringify(process.memoryUsage())}`;
        }
      });
      let baseline = memoryInUse();
      peak = baseline;
      const { size } = await rig.store.deliver(BOX, big.source());
      peak = Math.max(peak, memoryInUse());
      assert.equal(size, big.canonicalLength);
      t.diagnostic(`deliver 50 MB: live memory grew by at most ${peak - baseline} octets`);
      assert.ok(peak - baseline < BOUNDED, `delivery grew memory by ${peak - baseline} octets (peak at ${peakAt}; baseline ${baseline})`);

      const lease = await rig.locks.acquire(BOX.id);
      const drop = await rig.store.open(BOX, lease!);
      try {
        baseline = memoryInUse();
        peak = baseline;
        const hash = createHash('sha256');
        let length = 0;
        let n = 0;
        for await (const chunk of await drop.read(0, { bodyLines: null })) {
          hash.update(chunk as Buffer);
          length += (chunk as Buffer).length;
          if (++n % 64 === 0) peak = Math.max(peak, memoryInUse());
        }
        assert.equal(length, big.canonicalLength);
        assert.equal(hash.digest('hex'), big.sha256);
        t.diagnostic(`read 50 MB: live memory grew by at most ${peak - baseline} octets`);
        assert.ok(peak - baseline < BOUNDED, `reading grew memory by ${peak - baseline} octets`);
      } finally {
        await drop.close();
      }
    }));
});

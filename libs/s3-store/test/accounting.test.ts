/**
 * A randomised run on real Redis and versitygw: concurrent deliveries, sessions from two
 * processes that delete, close, or lose their lock before committing. Afterwards, message by
 * message: delivered minus committed-deleted is exactly what is listed, and (after a sweep) what
 * is in the bucket.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { StoreError, type MailboxRef } from '@postern/mailstore';
import { Sweeper } from '../src/index.js';
import { collect, objectKeys, text } from './lease-suite.js';
import { makeRig, standaloneRedis, startBackends, stopBackends, type Backends, type Rig } from './support.js';

let backends: Backends | undefined;
before(async () => {
  backends = await startBackends();
});
after(() => stopBackends(backends));

/** Uniform draws in [0, 1) from a seed (fast-check's generator), so a failure can be replayed. */
function prng(seed: number): () => number {
  const draws = fc.sample(fc.noBias(fc.integer({ min: 0, max: 2 ** 30 - 1 })), { seed, numRuns: 10_000 }).map((n) => n / 2 ** 30);
  let i = 0;
  return () => draws[i++ % draws.length] as number;
}

test('delivered minus committed-deleted equals what is listed, message by message', async (t) => {
  const seed = Number(process.env.ACCOUNTING_SEED ?? Date.now() % 1_000_000);
  t.diagnostic(`seed ${seed}`);
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const a = makeRig(backends!.s3Server, standaloneRedis(backends!.redisServer));
  const rigs: Rig[] = [a, a.another()];
  const boxes: MailboxRef[] = [0, 1, 2].map((i) => ({ id: `acct-${i}`, username: `acct-${i}@example.org` }));
  const delivered = new Map<string, Set<string>>(boxes.map((b) => [b.id, new Set()]));
  const deleted = new Map<string, Set<string>>(boxes.map((b) => [b.id, new Set()]));
  const outcomes = { commits: 0, lockLost: 0, closed: 0 };
  try {
    for (let round = 0; round < 25; round++) {
      // A burst of deliveries from both processes.
      await Promise.all(
        Array.from({ length: 1 + Math.floor(random() * 4) }, async (_, i) => {
          const box = pick(boxes);
          const r = await pick(rigs).store.deliver(box, text(`Subject: ${round}.${i}\n\n${'z'.repeat(Math.floor(random() * 3000))}\n`));
          delivered.get(box.id)!.add(r.uid);
        }),
      );
      // A session.
      const box = pick(boxes);
      const rig = pick(rigs);
      const lease = await rig.locks.acquire(`maildrop:${box.id}`);
      assert.ok(lease, 'sessions run one at a time, so the maildrop is free');
      const drop = await rig.store.open(box, lease);
      const chosen = drop.messages.map((_, i) => i).filter(() => random() < 0.4);
      if (chosen.length > 0) await collect(await drop.read(chosen[0]!, { bodyLines: random() < 0.5 ? null : 2 }));
      // Every eighth session loses its lock, so each run has some; the others draw their fate.
      const fate = round % 8 === 3 ? 0 : random();
      if (fate < 0.15) {
        // The lock expired under the session and another took it: the commit must change nothing.
        // (With nothing to delete there is nothing to refuse: it only releases, compare-and-delete.)
        await rig.redis.del(rig.index.keys(box.id).lock);
        const thief = await pick(rigs).locks.acquire(box.id);
        if (chosen.length > 0) await assert.rejects(drop.commit(chosen), (e: unknown) => e instanceof StoreError && e.code === 'lock-lost');
        else await drop.commit(chosen);
        assert.equal(await rig.redis.get(rig.index.keys(box.id).lock), thief!.token);
        await thief!.release();
        outcomes.lockLost++;
      } else if (fate < 0.3) {
        await drop.close();
        outcomes.closed++;
      } else {
        await drop.commit(chosen);
        for (const i of chosen) deleted.get(box.id)!.add(drop.messages[i]!.uid);
        outcomes.commits++;
      }
    }
    t.diagnostic(JSON.stringify(outcomes));
    for (const rig of rigs) await rig.store.settled();
    await new Sweeper({ store: a.store, graceMs: 3_600_000 }).runOnce();
    for (const box of boxes) {
      const expected = [...delivered.get(box.id)!].filter((uid) => !deleted.get(box.id)!.has(uid)).sort();
      const listed = (await a.index.listing(box.id)).map((m) => m.uid);
      assert.deepEqual(listed, expected, `listing of ${box.id} (seed ${seed})`);
      const stat = await a.store.stat(box);
      assert.equal(stat.count, expected.length);
      assert.equal(stat.octets, (await a.index.listing(box.id)).reduce((n, m) => n + m.size, 0));
      assert.deepEqual(
        await objectKeys(a, box.id),
        expected.map((uid) => a.store.objectKey(box.id, uid)).sort(),
        `objects of ${box.id} (seed ${seed})`,
      );
    }
    assert.ok(outcomes.commits > 0 && outcomes.lockLost > 0, JSON.stringify(outcomes));
  } finally {
    for (const rig of rigs) await rig.close();
  }
});

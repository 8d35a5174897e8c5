/**
 * Lease, fencing and commit behaviour of the Redis index, registered for one Redis setup
 * (standalone, Cluster, Sentinel) by the test files.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { S3Server } from '@postern/testkit';
import { pollUntil } from '@postern/testkit';
import { StoreError, type MailboxRef } from '@postern/mailstore';
import { RedisLoginDelayGate } from '../src/index.js';
import { makeRig, type RedisFactory, type Rig } from './support.js';

const BOX: MailboxRef = { id: 'lease-box', username: 'lease@example.org' };

export function text(s: string): Readable {
  return Readable.from([Buffer.from(s, 'latin1')]);
}

export async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

export async function objectKeys(rig: Rig, mailboxId: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const page of rig.s3.list(rig.store.mailboxPrefix(mailboxId))) keys.push(...page.map((o) => o.key));
  return keys.sort();
}

export function leaseSuite(name: string, setup: () => { s3: S3Server; redis: RedisFactory }): void {
  async function withRig(fn: (rig: Rig) => Promise<void>, options: { ttlMs?: number } = {}): Promise<void> {
    const { s3, redis } = setup();
    const rig = makeRig(s3, redis, options);
    try {
      await fn(rig);
    } finally {
      await rig.close();
    }
  }

  describe(`Redis leases and commits: ${name}`, () => {
    test('acquire returns a fence and the listing; a second acquire gets null until release', () =>
      withRig(async (rig) => {
        const uids = [];
        for (let i = 0; i < 3; i++) uids.push((await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`))).uid);
        const a = await rig.locks.acquire(`maildrop:${BOX.id}`);
        assert.ok(a);
        assert.deepEqual(
          a.takeListing()?.map((m) => m.uid),
          uids,
        );
        assert.equal(await rig.locks.acquire(`maildrop:${BOX.id}`), null);
        const other = rig.another();
        try {
          assert.equal(await other.locks.acquire(`maildrop:${BOX.id}`), null, 'another process sees the lock');
          await a.release();
          assert.equal(a.held(), false);
          assert.equal(a.signal.aborted, true);
          const b = await other.locks.acquire(`maildrop:${BOX.id}`);
          assert.ok(b);
          assert.ok(b.fence > a.fence, `fence ${b.fence} should exceed ${a.fence}`);
          await b.release();
        } finally {
          await other.close();
        }
      }));

    test('renewal keeps a lease alive past several TTLs', () =>
      withRig(
        async (rig) => {
          const lease = await rig.locks.acquire(BOX.id);
          assert.ok(lease);
          const started = Date.now();
          // Renewals happen every 100 ms; wait until five did (an external condition, polled).
          await pollUntil('five renewals', 10_000, async () => ((rig.index.roundTrips.byOperation.get('renew') ?? 0) >= 5 ? true : undefined));
          assert.ok(Date.now() - started > 300, 'more than one TTL went by');
          assert.equal(lease.held(), true);
          assert.equal(lease.signal.aborted, false);
          const pttl = await rig.redis.pttl(rig.index.keys(BOX.id).lock);
          assert.ok(pttl > 0 && pttl <= 300, `lock PTTL ${pttl}`);
          const other = rig.another();
          assert.equal(await other.locks.acquire(BOX.id), null);
          await other.close();
          await lease.release();
          assert.equal(await rig.redis.exists(rig.index.keys(BOX.id).lock), 0);
        },
        { ttlMs: 300 },
      ));

    test('a lease taken over in Redis: commit is refused, changes nothing, and the new holder sees every message', () =>
      withRig(async (rig) => {
        for (let i = 0; i < 3; i++) await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`));
        const lease = await rig.locks.acquire(BOX.id);
        assert.ok(lease);
        const drop = await rig.store.open(BOX, lease);
        assert.equal(drop.messages.length, 3);
        // The lock expires under the session (a stalled process): another session takes it.
        await rig.redis.del(rig.index.keys(BOX.id).lock);
        const other = rig.another();
        try {
          const next = await other.locks.acquire(BOX.id);
          assert.ok(next);
          assert.ok(next.fence > lease.fence);
          assert.equal(lease.held(), true, 'the stale session has not noticed yet');
          await assert.rejects(drop.commit([0, 1, 2]), (e: unknown) => {
            assert.ok(e instanceof StoreError);
            assert.equal(e.code, 'lock-lost');
            assert.equal(e.temporary, true);
            return true;
          });
          assert.equal(lease.signal.aborted, true);
          assert.equal(await rig.redis.get(rig.index.keys(BOX.id).lock), next.token, 'the new holder keeps its lock');
          const seen = await other.store.open(BOX, next);
          assert.equal(seen.messages.length, 3);
          assert.equal(await rig.redis.scard(rig.index.keys(BOX.id).pending), 0);
          assert.equal((await objectKeys(rig, BOX.id)).length, 3);
          await seen.close();
        } finally {
          await other.close();
        }
      }));

    test('a renewal that finds the lock gone aborts the lease signal', () =>
      withRig(
        async (rig) => {
          const lease = await rig.locks.acquire(BOX.id);
          assert.ok(lease);
          const aborted = once(lease.signal, 'abort');
          await rig.redis.del(rig.index.keys(BOX.id).lock);
          await aborted;
          assert.equal(lease.held(), false);
          assert.match(String((lease.signal.reason as Error).message), /taken over or expired/);
        },
        { ttlMs: 600 },
      ));

    test('an empty poll costs two Redis round trips and no S3 request', () =>
      withRig(async (rig) => {
        // Warm up: scripts loaded, connections open.
        const warm = await rig.locks.acquire(BOX.id);
        await (await rig.store.open(BOX, warm!)).commit([]);
        const redisBefore = rig.index.roundTrips.total;
        const s3Before = rig.s3.stats.requests;
        const lease = await rig.locks.acquire(`maildrop:${BOX.id}`);
        assert.ok(lease);
        const drop = await rig.store.open(BOX, lease);
        assert.equal(drop.messages.length, 0);
        await drop.commit([]);
        assert.equal(rig.index.roundTrips.total - redisBefore, 2);
        assert.equal(rig.s3.stats.requests - s3Before, 0);
        assert.equal(await rig.redis.exists(rig.index.keys(BOX.id).lock), 0, 'the lock is released');
      }));

    test('LOGIN-DELAY: one login per delay per mailbox, across processes, in one round trip', () =>
      withRig(async (rig) => {
        const gate = new RedisLoginDelayGate(rig.index);
        const other = rig.another();
        try {
          const otherGate = new RedisLoginDelayGate(other.index);
          const before = rig.index.roundTrips.total;
          assert.equal(await gate.admit(BOX.id, 400), true);
          assert.equal(rig.index.roundTrips.total - before, 1);
          assert.equal(await otherGate.admit(BOX.id, 400), false, 'another gateway refuses within the delay');
          assert.equal(await gate.admit('another-box', 400), true);
          assert.equal(await gate.admit(BOX.id, 0), true, 'no delay configured: always admitted');
          // Admitted again once Redis has expired the last login.
          await pollUntil('the login delay to pass', 5_000, async () => ((await otherGate.admit(BOX.id, 400)) ? true : undefined));
          assert.equal(await gate.admit(BOX.id, 400), false);
        } finally {
          await other.close();
        }
      }));

    test('a committed deletion is applied once, removed from S3 and from the pending set', () =>
      withRig(async (rig) => {
        const uids = [];
        for (let i = 0; i < 4; i++) uids.push((await rig.store.deliver(BOX, text(`Subject: ${i}\n\n${i}\n`))).uid);
        const lease = await rig.locks.acquire(BOX.id);
        const drop = await rig.store.open(BOX, lease!);
        const before = rig.index.roundTrips.total;
        await drop.commit([0, 2]);
        assert.equal(rig.index.roundTrips.total - before, 1, 'the commit is one round trip and releases the lock');
        assert.equal(lease!.held(), false);
        await rig.store.settled();
        assert.equal(await rig.redis.scard(rig.index.keys(BOX.id).pending), 0);
        assert.deepEqual(await objectKeys(rig, BOX.id), [rig.store.objectKey(BOX.id, uids[1]!), rig.store.objectKey(BOX.id, uids[3]!)]);
        assert.deepEqual(await rig.store.stat(BOX), { count: 2, octets: (await rig.index.listing(BOX.id)).reduce((n, m) => n + m.size, 0) });
        // The same commit sent again (a retry after a lost reply) is recognised, not re-applied.
        assert.equal(await rig.index.commit(BOX.id, lease!.token, lease!.fence, [uids[1]!]), 'already-applied');
        assert.equal((await rig.index.listing(BOX.id)).length, 2);
      }));
  });
}

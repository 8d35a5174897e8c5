// DeliverySlots: the bound on deliveries in flight, pure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliverySlots } from '../src/index.js';

describe('DeliverySlots', () => {
  it('grants up to the limit at once, then hands freed slots to waiters in arrival order', async () => {
    const slots = new DeliverySlots(2);
    const a = await slots.acquire(0);
    const b = await slots.acquire(0);
    assert.ok(a && b);
    assert.equal(slots.inFlight, 2);
    // Full and told not to wait: no slot.
    assert.equal(await slots.acquire(0), null);
    const order: string[] = [];
    const c = slots.acquire(60_000).then((r) => (order.push('c'), r));
    const d = slots.acquire(60_000).then((r) => (order.push('d'), r));
    assert.equal(slots.waiting, 2);
    b();
    b(); // a second call of one release frees nothing more
    const cRelease = await c;
    assert.ok(cRelease);
    assert.deepEqual(order, ['c']);
    assert.equal(slots.inFlight, 2);
    assert.equal(slots.waiting, 1);
    a();
    assert.ok(await d);
    assert.deepEqual(order, ['c', 'd']);
    // A newcomer does not overtake a waiter even when a slot is momentarily free.
    cRelease();
    assert.equal(slots.inFlight, 1);
  });

  it('gives up on its deadline or when the caller aborts, leaving the count unchanged', async () => {
    const slots = new DeliverySlots(1);
    const held = await slots.acquire(0);
    assert.ok(held);
    assert.equal(await slots.acquire(20), null);
    const controller = new AbortController();
    const waiting = slots.acquire(60_000, controller.signal);
    assert.equal(slots.waiting, 1);
    controller.abort();
    assert.equal(await waiting, null);
    assert.equal(slots.waiting, 0);
    assert.equal(await slots.acquire(60_000, controller.signal), null);
    held();
    assert.equal(slots.inFlight, 0);
    const again = await slots.acquire(0);
    assert.ok(again);
    assert.equal(slots.inFlight, 1);
  });

  it('refuses a limit below 1', () => {
    assert.throws(() => new DeliverySlots(0), /concurrency/);
  });
});

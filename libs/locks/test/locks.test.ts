import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { IpcLockManager, LockTable, LoginHistory, MemoryLockManager, serveLocks, type IpcPeer } from '../src/index.js';
import { channelPair } from './channel.js';

describe('MemoryLockManager', () => {
  it('one holder per key until release; the lease signal aborts on release', async () => {
    const locks = new MemoryLockManager();
    const a = await locks.acquire('k');
    assert.ok(a);
    assert.equal(await locks.acquire('k'), null);
    assert.ok(await locks.acquire('other'));
    assert.equal(a.held(), true);
    await a.release();
    assert.equal(a.held(), false);
    assert.equal(a.signal.aborted, true);
    assert.ok(await locks.acquire('k'));
  });
});

describe('LockTable and IpcLockManager', () => {
  it('two workers contend for one key through the primary; fences increase', async () => {
    const table = new LockTable();
    const [p1, w1] = channelPair();
    const [p2, w2] = channelPair();
    serveLocks(table, 'w1', p1);
    serveLocks(table, 'w2', p2);
    const one = new IpcLockManager(w1);
    const two = new IpcLockManager(w2);
    const a = await one.acquire('maildrop:alice');
    assert.ok(a);
    assert.equal(await two.acquire('maildrop:alice'), null);
    const b = await two.acquire('maildrop:bob');
    assert.ok(b && b.fence > a.fence);
    await a.release();
    const c = await two.acquire('maildrop:alice');
    assert.ok(c);
    assert.equal(table.size, 2);
  });

  it('a stale token cannot release a lock someone else now holds', () => {
    const table = new LockTable();
    const first = table.acquire('w1', 'k');
    assert.ok(first);
    table.release('k', first.token);
    const second = table.acquire('w2', 'k');
    assert.ok(second);
    table.release('k', first.token);
    assert.equal(table.acquire('w3', 'k'), null);
  });

  it('releaseOwner drops exactly the locks of a dead worker', () => {
    const table = new LockTable();
    table.acquire('w1', 'a');
    table.acquire('w1', 'b');
    table.acquire('w2', 'c');
    assert.equal(table.releaseOwner('w1'), 2);
    assert.ok(table.acquire('w2', 'a'));
    assert.equal(table.acquire('w1', 'c'), null);
  });

  it('a waiting request fails when the channel to the primary closes', async () => {
    const silent: IpcPeer = { send: () => true, on: () => undefined };
    const locks = new IpcLockManager(silent);
    const pending = locks.acquire('k');
    locks.disconnected();
    await assert.rejects(pending, /unavailable/);
  });

  it('requests made in the same tick share one message each way, and each gets its own answer', async () => {
    const table = new LockTable();
    const [primaryEnd, workerEnd] = channelPair();
    const sent = { worker: [] as unknown[], primary: [] as unknown[] };
    const counting = (end: IpcPeer, log: unknown[]): IpcPeer => ({
      send: (m) => {
        log.push(m);
        return end.send(m);
      },
      on: (event, listener) => end.on(event, listener),
    });
    serveLocks(table, 'w1', counting(primaryEnd, sent.primary));
    const locks = new IpcLockManager(counting(workerEnd, sent.worker));
    const [a, b, c] = await Promise.all([locks.acquire('maildrop:a'), locks.acquire('maildrop:b'), locks.acquire('maildrop:a')]);
    assert.ok(a && b);
    assert.equal(c, null, 'the third request loses to the first, in order');
    assert.equal(sent.worker.length, 1);
    assert.equal(sent.primary.length, 1);
    // One request alone goes as itself.
    await a.release();
    assert.equal(sent.worker.length, 2);
    assert.equal((sent.worker[1] as { op?: string }).op, 'release');
    assert.ok(await locks.acquire('maildrop:a'));
  });

  it('a batch that cannot be sent fails every request in it', async () => {
    const broken: IpcPeer = {
      send: () => {
        throw new Error('channel closed');
      },
      on: () => undefined,
    };
    const locks = new IpcLockManager(broken);
    const results = await Promise.allSettled([locks.acquire('x'), locks.acquire('y')]);
    assert.deepEqual(
      results.map((r) => r.status === 'rejected' && (r.reason as Error).message),
      ['channel closed', 'channel closed'],
    );
  });

  it('over a real IPC channel: a killed child loses its locks', async () => {
    const table = new LockTable();
    const code = `
      process.on('message', (m) => { if (m && m.postern === 'lock-reply') process.send({ got: m.token !== null }); });
      process.send({ postern: 'lock', op: 'acquire', id: 1, key: 'maildrop:alice' });
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    serveLocks(table, 'child', child);
    const [reply] = (await once(child, 'message', { signal: AbortSignal.timeout(20_000) })) as [{ got?: boolean }];
    // The first message the child sends is the lock request; wait for its own report.
    let report = reply;
    while (report.got === undefined) [report] = (await once(child, 'message')) as [{ got?: boolean }];
    assert.equal(report.got, true);
    assert.equal(table.acquire('parent', 'maildrop:alice'), null);
    child.kill('SIGKILL');
    await once(child, 'exit');
    table.releaseOwner('child');
    assert.ok(table.acquire('parent', 'maildrop:alice'));
  });
});

describe('LOGIN-DELAY', () => {
  it('admits the first login, refuses one within the delay, admits again after it; per key', () => {
    let now = 1_000_000;
    const history = new LoginHistory(() => now);
    assert.equal(history.admit('alice', 60_000), true);
    now += 59_999;
    assert.equal(history.admit('alice', 60_000), false);
    assert.equal(history.admit('bob', 60_000), true);
    now += 1;
    assert.equal(history.admit('alice', 60_000), true);
  });

  it('forgets mailboxes whose last login is older than the delay', () => {
    let now = 0;
    const history = new LoginHistory(() => now);
    for (let i = 0; i < 100; i++) history.admit(`user${i}`, 1_000);
    assert.equal(history.size, 100);
    now += 5_000;
    history.admit('late', 1_000);
    assert.equal(history.size, 1);
  });

  it('workers share one history through the primary', async () => {
    const table = new LockTable();
    const history = new LoginHistory();
    const [p1, w1] = channelPair();
    const [p2, w2] = channelPair();
    serveLocks(table, 'w1', p1, history);
    serveLocks(table, 'w2', p2, history);
    assert.equal(await new IpcLockManager(w1).admit('maildrop-alice', 60_000), true);
    assert.equal(await new IpcLockManager(w2).admit('maildrop-alice', 60_000), false);
    assert.equal(await new IpcLockManager(w2).admit('maildrop-bob', 60_000), true);
  });
});

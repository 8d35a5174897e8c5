/**
 * The cluster-mode end-to-end suite, run by cluster-*.e2e.test.ts on each Redis mode. Cluster mode end to end: gateway and delivery-worker processes (`main.ts gateway|delivery`)
 * sharing one Redis and one S3 bucket (versitygw), with crashes (SIGKILL), pauses (SIGSTOP) and
 * backend outages. The invariants of ARCHITECTURE.md are checked message by message.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { pollUntil, s3Client, startRedis, startRedisCluster, startRedisSentinel, startS3, type S3Server } from '@postern/testkit';
import { clusterFixture, type ClusterFixture, type ClusterProcess } from './cluster.js';
import { lmtpSend } from './lmtp-client.js';
import { address, bigMessage, simpleMessage, testIdOf, type TestMessage } from './messages.js';
import { Pop3Client } from './pop3-client.js';

const LOCK_TTL_MS = 2_000;
const PASSWORD = 'pw-cluster-test';

async function deliver(lmtpPort: number, user: string, message: TestMessage): Promise<void> {
  const result = await lmtpSend(lmtpPort, 'sender@example.com', [address(user)], message.delivered);
  const codes = [...result.rcpt, ...result.data].map((r) => `${r.code} ${r.text}`);
  assert.equal(result.data[0]?.code, 250, `delivery of ${message.id} to ${user}: ${codes.join(' / ')}`);
}

/** With a backend down, the delivery worker answers the recipient with a 4xx (the MTA retries). */
async function assertDeferred(lmtpPort: number, user: string, message: TestMessage): Promise<void> {
  const result = await lmtpSend(lmtpPort, 'sender@example.com', [address(user)], message.delivered);
  const reply = result.data[0] ?? result.rcpt[0];
  assert.ok(reply && reply.code >= 400 && reply.code < 500, `delivery with a backend down: ${JSON.stringify(result)}`);
  assert.match(reply.text, /^4\.\d+\.\d+/);
}

async function login(port: number, user: string): Promise<Pop3Client> {
  const client = await Pop3Client.connect(port);
  await client.login(user, PASSWORD);
  return client;
}

/** The X-Test-Id of every message in the maildrop, in order (TOP n 0 of each). */
async function idsIn(client: Pop3Client): Promise<string[]> {
  const ids: string[] = [];
  const list = await client.listing('LIST');
  for (const line of list) {
    const n = line.split(' ')[0] as string;
    const top = await client.multi(`TOP ${n} 0`);
    assert.match(top.status, /^\+OK/);
    ids.push(testIdOf(top.body) ?? `(no id in message ${n})`);
  }
  return ids;
}

/** A fresh session's view of the maildrop, then QUIT without deleting. */
async function listedIds(port: number, user: string): Promise<string[]> {
  const client = await login(port, user);
  const ids = await idsIn(client);
  assert.match(await client.quit(), /^\+OK/);
  return ids;
}

/** Logs in as soon as the maildrop lock is free (a crashed or paused holder's lease lapses). */
async function loginWhenFree(port: number, user: string, timeoutMs = LOCK_TTL_MS * 4): Promise<Pop3Client> {
  return pollUntil(`login of ${user} after the lease lapsed`, timeoutMs, async () => {
    const client = await Pop3Client.connect(port);
    await client.command(`USER ${user}`);
    const reply = await client.command(`PASS ${PASSWORD}`);
    if (reply.startsWith('+OK')) return client;
    client.destroy();
    assert.match(reply, /^-ERR \[(IN-USE|SYS\/TEMP)\]/);
    return undefined;
  });
}

async function objectCount(s3: S3Server): Promise<number> {
  const client = s3Client(s3);
  let count = 0;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, ContinuationToken: token }));
    count += page.KeyCount ?? 0;
    token = page.NextContinuationToken;
  } while (token);
  client.destroy();
  return count;
}

export type RedisMode = 'standalone' | 'cluster' | 'sentinel';

interface Backend {
  readonly env: Record<string, string>;
  /** Standalone only: the Redis process, for restarts. */
  readonly restartable: { stop(): Promise<void>; start(): Promise<void> } | null;
  readonly failover: (() => Promise<unknown>) | null;
  stop(): Promise<void>;
}

async function startBackend(mode: RedisMode): Promise<Backend> {
  if (mode === 'cluster') {
    const cluster = await startRedisCluster({ masters: 3 });
    return {
      env: { REDIS_CLUSTER_NODES: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',') },
      restartable: null,
      failover: null,
      stop: () => cluster.stop(),
    };
  }
  if (mode === 'sentinel') {
    const group = await startRedisSentinel({ replicas: 1, sentinels: 3 });
    return {
      env: { REDIS_SENTINELS: group.sentinels.map((n) => `${n.host}:${n.port}`).join(','), REDIS_SENTINEL_MASTER: group.masterName },
      restartable: null,
      failover: () => group.failover(),
      stop: () => group.stop(),
    };
  }
  const redis = await startRedis({ appendonly: true });
  return {
    env: { REDIS_URL: redis.url },
    restartable: { stop: () => redis.proc.stop(), start: () => redis.proc.start() },
    failover: null,
    stop: () => redis.stop(),
  };
}

/** The whole suite on one Redis mode (each mode has its own test file, so they run in parallel). */
export function clusterSuite(mode: RedisMode): void {
  describe(`cluster mode on ${mode} Redis: two gateways and a delivery worker, one bucket`, { concurrency: false }, () => {
    let backend: Backend;
    let s3: S3Server;
    let fx: ClusterFixture;
    let g1: ClusterProcess;
    let g2: ClusterProcess;
    let worker: ClusterProcess;
    const users = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy', 'jay'];

    before(async () => {
      [backend, s3] = await Promise.all([startBackend(mode), startS3()]);
      fx = await clusterFixture(Object.fromEntries(users.map((u) => [u, PASSWORD])), {
        ...s3.env,
        ...backend.env,
        LOCK_TTL_MS: String(LOCK_TTL_MS),
        S3_TIMEOUT_MS: '1500',
        SWEEP_INTERVAL_S: '1',
        AUTH_THROTTLE_USER_FAILURES: '3',
        AUTH_THROTTLE_MAX_DELAY_MS: '0',
        CREDENTIAL_CACHE_SECRET: 'a-cluster-wide-secret-for-the-credential-cache',
      });
      [g1, g2, worker] = await Promise.all([fx.start('gateway'), fx.start('gateway'), fx.start('delivery')]);
    });
    after(async () => {
      await fx?.stop();
      await Promise.all([backend?.stop(), s3?.stop()]);
    });

    it('serves mail delivered through the worker byte-exact from either gateway', async () => {
      const messages = [simpleMessage('c1'), simpleMessage('c2', '.leading dot\r\n..two dots\r\n.\r\nend'), bigMessage(1024 * 1024)];
      for (const m of messages) await deliver(worker.lmtpPort, 'ann', m);
      for (const g of [g1, g2]) {
        const client = await login(g.pop3Port, 'ann');
        for (let i = 0; i < messages.length; i++) {
          const reply = await client.multi(`RETR ${i + 1}`);
          assert.match(reply.status, /^\+OK/);
          assert.ok(reply.body.equals((messages[i] as TestMessage).canonical), `message ${i + 1} differs on gateway ${g.proc.options.name}`);
        }
        const sizes = await client.listing('LIST');
        assert.deepEqual(
          sizes.map((l) => Number(l.split(' ')[1])),
          messages.map((m) => m.canonical.length),
        );
        assert.match(await client.quit(), /^\+OK/);
      }
    });

    it('a session on one gateway makes the other answer [IN-USE]; DELE+QUIT on one is seen by the other', async () => {
      for (const id of ['i1', 'i2', 'i3']) await deliver(worker.lmtpPort, 'ben', simpleMessage(id));
      const first = await login(g1.pop3Port, 'ben');
      const second = await Pop3Client.connect(g2.pop3Port);
      await second.command('USER ben');
      assert.match(await second.command(`PASS ${PASSWORD}`), /^-ERR \[IN-USE\]/);
      second.destroy();
      assert.match(await first.command('DELE 2'), /^\+OK/);
      assert.match(await first.quit(), /^\+OK/);
      assert.deepEqual(await listedIds(g2.pop3Port, 'ben'), ['i1', 'i3']);
    });

    it('kill -9 of a gateway mid-RETR deletes nothing, and the lease frees within its TTL', async () => {
      await deliver(worker.lmtpPort, 'cat', simpleMessage('k1'));
      await deliver(worker.lmtpPort, 'cat', bigMessage(8 * 1024 * 1024));
      const client = await login(g1.pop3Port, 'cat');
      assert.match(await client.command('DELE 1'), /^\+OK/);
      client.write('RETR 2\r\n');
      assert.match(await client.line(), /^\+OK/);
      await g1.proc.kill();
      await client.closed;
      const started = Date.now();
      const next = await loginWhenFree(g2.pop3Port, 'cat');
      assert.ok(Date.now() - started <= LOCK_TTL_MS * 2, `lease took ${Date.now() - started} ms to free`);
      assert.deepEqual(await idsIn(next), ['k1', 'big']);
      assert.match(await next.quit(), /^\+OK/);
      await g1.proc.start();
    });

    it('kill -9 of a gateway in the middle of QUIT: the deletions happen all together or not at all', async () => {
      for (const id of ['q1', 'q2', 'q3', 'q4']) await deliver(worker.lmtpPort, 'dan', simpleMessage(id));
      const client = await login(g1.pop3Port, 'dan');
      for (const n of [1, 3, 4]) assert.match(await client.command(`DELE ${n}`), /^\+OK/);
      // QUIT and the kill race: the commit may or may not have reached Redis.
      client.write('QUIT\r\n');
      await g1.proc.kill();
      await client.closed;
      const next = await loginWhenFree(g2.pop3Port, 'dan');
      const after = await idsIn(next);
      assert.match(await next.quit(), /^\+OK/);
      assert.ok(
        JSON.stringify(after) === JSON.stringify(['q2']) || JSON.stringify(after) === JSON.stringify(['q1', 'q2', 'q3', 'q4']),
        `partial commit: ${JSON.stringify(after)}`,
      );
      await g1.proc.start();
    });

    it('fencing: a gateway paused past its lease while another session logs in answers QUIT with [SYS/TEMP] and deletes nothing', async () => {
      for (const id of ['f1', 'f2']) await deliver(worker.lmtpPort, 'eve', simpleMessage(id));
      const stale = await login(g1.pop3Port, 'eve');
      assert.match(await stale.command('DELE 1'), /^\+OK/);
      await g1.proc.pause();
      let fresh: Pop3Client;
      try {
        fresh = await loginWhenFree(g2.pop3Port, 'eve');
      } finally {
        g1.proc.signal('SIGCONT');
      }
      stale.write('QUIT\r\n');
      assert.match(await stale.line(), /^-ERR \[SYS\/TEMP\]/);
      assert.deepEqual(await idsIn(fresh), ['f1', 'f2']);
      assert.match(await fresh.quit(), /^\+OK/);
      assert.deepEqual(await listedIds(g1.pop3Port, 'eve'), ['f1', 'f2']);
    });

    if (mode === 'standalone') {
      it('Redis stopped mid-session: QUIT answers [SYS/TEMP], nothing is lost, and service resumes when Redis is back', async () => {
        for (const id of ['r1', 'r2']) await deliver(worker.lmtpPort, 'fay', simpleMessage(id));
        const client = await login(g1.pop3Port, 'fay');
        assert.match(await client.command('DELE 1'), /^\+OK/);
        await backend.restartable?.stop();
        try {
          client.write('QUIT\r\n');
          assert.match(await client.line(), /^-ERR \[SYS\/TEMP\]/);
          const refused = await Pop3Client.connect(g2.pop3Port);
          await refused.command('USER fay');
          assert.match(await refused.command(`PASS ${PASSWORD}`), /^-ERR \[SYS\/TEMP\]/);
          refused.destroy();
          // The MTA is told to retry later; nothing is acknowledged that is not indexed.
          await assertDeferred(worker.lmtpPort, 'fay', simpleMessage('r-deferred'));
        } finally {
          await backend.restartable?.start();
        }
        const back = await loginWhenFree(g1.pop3Port, 'fay');
        assert.deepEqual(await idsIn(back), ['r1', 'r2']);
        assert.match(await back.quit(), /^\+OK/);
      });
    }

    if (mode === 'sentinel') {
      it('a Sentinel failover mid-session: the session ends cleanly or commits, nothing is lost, new sessions work', async () => {
        for (const id of ['s1', 's2']) await deliver(worker.lmtpPort, 'fay', simpleMessage(id));
        const client = await login(g1.pop3Port, 'fay');
        await backend.failover?.();
        client.write('QUIT\r\n');
        const reply = await client.line().catch(() => '(closed)');
        assert.match(reply, /^(\+OK|-ERR \[SYS\/TEMP\]|\(closed\))/);
        const back = await loginWhenFree(g2.pop3Port, 'fay');
        assert.deepEqual(await idsIn(back), ['s1', 's2']);
        assert.match(await back.quit(), /^\+OK/);
        await deliver(worker.lmtpPort, 'fay', simpleMessage('s3'));
        assert.deepEqual(await listedIds(g1.pop3Port, 'fay'), ['s1', 's2', 's3']);
      });
    }

    it('S3 down: RETR answers [SYS/TEMP]; S3 stopped mid-RETR drops the session; nothing is lost; service resumes', async () => {
      await deliver(worker.lmtpPort, 'gus', simpleMessage('o1'));
      await deliver(worker.lmtpPort, 'gus', bigMessage(16 * 1024 * 1024));
      // Mid-RETR: stop reading so the stream backs up to S3, then stop S3.
      const raw = connect({ host: '127.0.0.1', port: g1.pop3Port });
      raw.on('error', () => undefined);
      const received: Buffer[] = [];
      let total = 0;
      let paused = false;
      const firstBytes = new Promise<void>((resolve) => {
        raw.on('data', (chunk: Buffer) => {
          received.push(chunk);
          total += chunk.length;
          if (total > 256 * 1024 && !paused) {
            paused = true;
            raw.pause();
            resolve();
          }
        });
      });
      raw.write(`USER gus\r\nPASS ${PASSWORD}\r\nRETR 2\r\n`);
      await firstBytes;
      await s3.proc.stop();
      let s3Back = false;
      try {
        raw.resume();
        await new Promise<void>((resolve) => raw.once('close', () => resolve()));
        const text = Buffer.concat(received).toString('latin1');
        assert.ok(!text.endsWith('\r\n.\r\n'), 'the RETR finished although S3 stopped mid-stream');
        // A new session: the listing is from Redis; reading a message needs S3.
        const client = await loginWhenFree(g2.pop3Port, 'gus');
        assert.equal((await client.listing('LIST')).length, 2);
        client.write('RETR 1\r\n');
        assert.match(await client.line(), /^-ERR \[SYS\/TEMP\]/);
        assert.match(await client.quit(), /^\+OK/);
        await assertDeferred(worker.lmtpPort, 'gus', simpleMessage('o-deferred'));
        await s3.proc.start();
        s3Back = true;
      } finally {
        if (!s3Back) await s3.proc.start();
      }
      const client = await loginWhenFree(g1.pop3Port, 'gus');
      assert.deepEqual(await idsIn(client), ['o1', 'big']);
      assert.match(await client.quit(), /^\+OK/);
    });

    it('accounting over a randomised run: delivered minus committed-deleted equals what is listed, message by message', async () => {
      // Deterministic pseudo-random sequence (reproducible failures).
      let seed = 0x2545f491;
      const rand = (n: number): number => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % n;
      };
      const mailbox = 'hal';
      const expected = new Set<string>();
      let next = 0;
      for (let round = 0; round < 12; round++) {
        const deliveries = 1 + rand(4);
        for (let i = 0; i < deliveries; i++) {
          const id = `a${next++}`;
          await deliver(worker.lmtpPort, mailbox, simpleMessage(id));
          expected.add(id);
        }
        const gateway = rand(2) === 0 ? g1 : g2;
        const client = await loginWhenFree(gateway.pop3Port, mailbox);
        const ids = await idsIn(client);
        assert.deepEqual(ids, [...expected], `round ${round}: listing differs from the accounting`);
        const doomed = ids.map((id, i) => ({ id, n: i + 1 })).filter(() => rand(3) === 0);
        for (const d of doomed) assert.match(await client.command(`DELE ${d.n}`), /^\+OK/);
        const ending = rand(4);
        if (ending === 0) {
          client.destroy(); // dropped connection: nothing deleted
          await client.closed;
        } else if (ending === 1 && gateway === g1) {
          await g1.proc.kill(); // crash before QUIT: nothing deleted
          await client.closed;
          await g1.proc.start();
        } else {
          assert.match(await client.quit(), /^\+OK/);
          for (const d of doomed) expected.delete(d.id);
        }
      }
      assert.deepEqual(await listedIds(g2.pop3Port, mailbox), [...expected]);
    });

    it('failed-login counters are shared: failures on one gateway refuse the account on the other', async () => {
      for (let i = 0; i < 3; i++) {
        const client = await Pop3Client.connect(g1.pop3Port);
        await client.command('USER ivy');
        assert.match(await client.command('PASS wrong-guess'), /^-ERR \[AUTH\]/);
        client.destroy();
      }
      const client = await Pop3Client.connect(g2.pop3Port);
      await client.command('USER ivy');
      assert.match(await client.command(`PASS ${PASSWORD}`), /^-ERR \[AUTH\]/, 'the right password got through a throttled account');
      client.destroy();
    });

    it('a login verified by one gateway is answered for the other from the cache shared in Redis', async () => {
      const sharedHits = async (g: ClusterProcess): Promise<number> => {
        const text = await (await fetch(`http://127.0.0.1:${g.adminPort}/metrics`)).text();
        const line = text.split('\n').find((l) => l.startsWith('postern_credential_cache_lookups_total{result="shared_hit"}'));
        return line ? Number(line.split(' ')[1]) : 0;
      };
      const before = await sharedHits(g2);
      const first = await login(g1.pop3Port, 'jay');
      assert.match(await first.quit(), /^\+OK/);
      const second = await login(g2.pop3Port, 'jay');
      assert.match(await second.quit(), /^\+OK/);
      assert.equal(await sharedHits(g2), before + 1);
    });

    it('the sweeper removes the objects of committed deletions from the bucket', async () => {
      const before = await objectCount(s3);
      for (const id of ['w1', 'w2']) await deliver(worker.lmtpPort, 'ann', simpleMessage(id));
      assert.equal(await objectCount(s3), before + 2);
      const client = await login(g1.pop3Port, 'ann');
      const n = (await client.listing('LIST')).length;
      assert.match(await client.command(`DELE ${n - 1}`), /^\+OK/);
      assert.match(await client.command(`DELE ${n}`), /^\+OK/);
      assert.match(await client.quit(), /^\+OK/);
      await pollUntil('deleted objects gone from the bucket', 10_000, async () => ((await objectCount(s3)) === before ? true : undefined));
      // The worker's sweeper runs every SWEEP_INTERVAL_S and says so on /metrics.
      const metrics = await (await fetch(`http://127.0.0.1:${worker.adminPort}/metrics`)).text();
      const runs = /^postern_sweep_runs_total\{result="ok"\} (\d+)/m.exec(metrics);
      assert.ok(runs && Number(runs[1]) > 0, 'no successful sweeper pass on the delivery worker');
    });
  });
}

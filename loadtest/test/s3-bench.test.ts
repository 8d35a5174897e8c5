// The cluster benchmark, briefly: a real Redis, versitygw, a gateway and a delivery worker from the
// sources, and Dovecot. It checks that every figure is measured and printed and that the counts
// are consistent; no timing is asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatS3Bench, s3Bench } from '../src/s3-bench.js';

test('bench:s3 measures and prints sessions, RETR against raw GET, Redis and S3 counts, and Dovecot', { timeout: 300_000 }, async () => {
  const progress: string[] = [];
  const r = await s3Bench({
    users: 6,
    emptyUsers: 2,
    messages: 3,
    sizes: '2k-40k',
    seed: 7,
    concurrency: 3,
    durationSeconds: 1,
    rounds: 1,
    polls: 10,
    built: false,
    s3KeepAlive: true,
    cpuProfDir: null,
    dovecot: true,
    log: (t) => progress.push(t),
  });
  assert.equal(r.data.messages, 18);
  assert.equal(r.data.objects, 18, 'one object per delivered message');
  for (const runs of [r.gateway, r.dovecot]) {
    assert.equal(runs.length, 1);
    const run = runs[0]!;
    assert.ok(run.sessionsOk > 0, `${run.target}: sessions ran`);
    assert.equal(run.sessionsFailed, 0, `${run.target}: ${JSON.stringify(run.errors)}`);
    assert.ok(run.server !== null && run.server.cpuSeconds > 0, `${run.target}: server CPU measured`);
  }
  const pass = r.throughput[0]!;
  // The same objects both ways: every byte the gateway served is what a raw GET of the bucket reads.
  assert.equal(pass.gatewayOctets, pass.rawOctets);
  assert.equal(pass.rawOctets, r.data.crlfOctets);
  assert.ok(pass.gatewayMBps > 0 && pass.rawMBps > 0);

  for (const p of [r.emptyPoll, r.fullSession]) {
    assert.equal(p.sessions, 10);
    assert.equal(p.failed, 0);
    const c = p.perSession;
    assert.ok(c.redisClientCommands >= 1, 'a session reaches Redis');
    assert.ok(c.redisCommands >= c.redisClientCommands, 'commandstats count at least what clients sent');
    assert.ok(c.redisOperations >= 1);
  }
  // Each full session fetches its 3 messages from S3; an empty one has nothing to fetch.
  assert.ok(r.fullSession.perSession.s3Requests >= 3, JSON.stringify(r.fullSession.perSession.s3ByOperation));
  assert.equal(r.emptyPoll.perSession.s3ByOperation.get ?? 0, 0);

  const report = formatS3Bench(r);
  for (const label of ['sessions/s', 'RETR MB/s', 'session p50 ms', 'session p99 ms', 'server CPU ms/session']) {
    assert.match(report, new RegExp(`^${label.replace('/', '\\/')} +\\d+\\.\\d+ +\\d+\\.\\d+ +\\d+\\.\\d\\d$`, 'm'), label);
  }
  assert.match(report, /^gateway RETR MB\/s: +\d+\.\d /m);
  assert.match(report, /^raw GET MB\/s: +\d+\.\d /m);
  assert.match(report, /^gateway\/raw: +\d+\.\d\d /m);
  for (const what of ['Redis commands \\(INFO commandstats\\)', 'Redis round trips \\(MONITOR, client-sent\\)', 'Redis operations \\(gateway metrics\\)', 'S3 requests \\(gateway metrics\\)']) {
    assert.equal(report.match(new RegExp(`^  ${what}: +\\d+\\.\\d\\d`, 'gm'))?.length, 2, what);
  }
  assert.match(report, /^target: an empty poll costs at most 2 Redis round trips and no S3 request: (met|MISSED)$/m);
});

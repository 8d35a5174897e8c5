// The metrics-and-logging overhead harness, briefly: both variants run, each gives sessions/s and
// CPU per session, and the variants really differ in what the server logs. No timing is asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatOverhead, overhead } from '../src/overhead.js';

const FROM_SOURCES = 'POP3S_LISTEN=off LMTP_LISTEN=off ADMIN_LISTEN=off WORKERS=1 exec node --conditions=development --import tsx services/server/src/main.ts';

for (const mode of ['parallel', 'alternate'] as const) {
  test(`bench:overhead --mode ${mode} produces sessions/s and CPU per session for metrics+logging on and off`, { timeout: 240_000 }, async () => {
    const progress: string[] = [];
    const result = await overhead({
      ours: FROM_SOURCES,
      mode,
      rounds: 1,
      durationSeconds: 1,
      concurrency: 2,
      users: 4,
      messages: 2,
      sizes: '4k',
      seed: 1,
      log: (t) => progress.push(t),
    });
    assert.deepEqual(
      result.runs.map((r) => r.variant),
      ['on', 'off'],
    );
    for (const run of result.runs) {
      assert.ok(run.sessionsOk > 0, `${run.variant}: sessions ran`);
      assert.equal(run.sessionsFailed, 0, `${run.variant}: no failed sessions`);
      assert.ok(run.sessionsPerSecond > 0 && Number.isFinite(run.sessionsPerSecond));
      assert.ok(run.cpuMsPerSession > 0 && Number.isFinite(run.cpuMsPerSession), `${run.variant}: CPU per session measured`);
    }
    const [on, off] = result.runs as [(typeof result.runs)[0], (typeof result.runs)[0]];
    // info logging writes at least a login and a session-end line per session; silent writes none.
    assert.ok(on.logLines >= 2 * on.sessionsOk, `on: ${on.logLines} log lines for ${on.sessionsOk} sessions`);
    assert.equal(off.logLines, 0);
    assert.ok(Number.isFinite(result.ratio.sessionsPerSecond) && Number.isFinite(result.ratio.cpuMsPerSession));
    assert.ok(Number.isFinite(result.pairedRatio.sessionsPerSecond) && Number.isFinite(result.pairedRatio.cpuMsPerSession));
    const report = formatOverhead(result);
    assert.match(report, /metrics on, LOG_LEVEL=info +\d+\.\d +\d+\.\d\d/);
    assert.match(report, /metrics off, LOG_LEVEL=silent +\d+\.\d +\d+\.\d\d/);
    assert.match(report, /on\/off \(of the medians\) +\d+\.\d{3} +\d+\.\d{3}/);
    assert.match(report, /on\/off \(median of rounds\) +\d+\.\d{3} +\d+\.\d{3}/);
  });
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import client from 'prom-client';
import { Histogram } from '../src/histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];

function pair(labelNames: readonly string[]): { ours: Histogram<string>; theirs: client.Histogram<string>; registries: [client.Registry, client.Registry] } {
  const a = new client.Registry();
  const b = new client.Registry();
  const config = { name: 'test_duration_seconds', help: 'Test.', labelNames, buckets: BUCKETS };
  return {
    ours: new Histogram({ ...config, registers: [a] }),
    theirs: new client.Histogram({ ...config, registers: [b] }),
    registries: [a, b],
  };
}

describe('Histogram', () => {
  it('exports what prom-client exports for the same observations, labelled or not', async () => {
    const labelled = fc.array(fc.tuple(fc.constantFrom('RETR', 'LIST', 'QUIT'), fc.constantFrom('ok', 'error'), fc.double({ min: 0, max: 5, noNaN: true })), {
      maxLength: 40,
    });
    await fc.assert(
      fc.asyncProperty(labelled, async (observations) => {
        const { ours, theirs, registries } = pair(['command', 'result']);
        for (const [command, result, v] of observations) {
          ours.observe({ command, result }, v);
          theirs.observe({ command, result }, v);
        }
        assert.equal(await registries[0].metrics(), await registries[1].metrics());
      }),
      { numRuns: 100 },
    );
    const { ours, theirs, registries } = pair([]);
    assert.equal(await registries[0].metrics(), await registries[1].metrics(), 'an unlabelled histogram is exported before any observation');
    for (const v of [0, 0.001, 0.0011, 7]) {
      ours.observe(v);
      theirs.observe(v);
    }
    assert.equal(await registries[0].metrics(), await registries[1].metrics());
  });

  it('sums across workers like prom-client histograms do', async () => {
    const workers = [pair(['command']), pair(['command'])];
    workers[0]!.ours.observe({ command: 'RETR' }, 0.005);
    workers[1]!.ours.observe({ command: 'RETR' }, 0.5);
    workers[0]!.theirs.observe({ command: 'RETR' }, 0.005);
    workers[1]!.theirs.observe({ command: 'RETR' }, 0.5);
    const ours = client.AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.registries[0].getMetricsAsJSON())));
    const theirs = client.AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.registries[1].getMetricsAsJSON())));
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.match(await ours.metrics(), /test_duration_seconds_count\{command="RETR"\} 2/);
  });

  it('refuses a label it was not given, a non-finite value and buckets out of order', () => {
    const { ours } = pair(['command']);
    assert.throws(() => ours.observe({ command: 'RETR', user: 'alice' } as never, 1), /unknown label user/);
    assert.throws(() => ours.observe({ command: 'RETR' }, Number.NaN), TypeError);
    assert.throws(() => new Histogram({ name: 'x', help: 'x', buckets: [1, 0.5], registers: [] }), /ascend/);
  });

  it('reset() empties every series', async () => {
    const { ours, theirs, registries } = pair(['command']);
    ours.observe({ command: 'RETR' }, 1);
    theirs.observe({ command: 'RETR' }, 1);
    ours.reset();
    theirs.reset();
    assert.equal(await registries[0].metrics(), await registries[1].metrics());
  });
});

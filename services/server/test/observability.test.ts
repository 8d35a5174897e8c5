// The alerting rules pass `promtool check rules` and their unit tests, and every metric the rules
// and the Grafana dashboard use is one the server really exports.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { run } from './support/run.js';
import { startTestServer } from './support/server.js';

const infra = (path: string): string => fileURLToPath(new URL(`../../../infra/${path}`, import.meta.url));

describe('alerts and dashboard', () => {
  it('promtool accepts the rules and their unit tests pass', async () => {
    const check = await run('promtool', ['check', 'rules', infra('prometheus/alerts.yml')]);
    assert.equal(check.code, 0, check.stdout.toString() + check.stderr);
    const tests = await run('promtool', ['test', 'rules', infra('prometheus/alerts.test.yml')]);
    assert.equal(tests.code, 0, tests.stdout.toString() + tests.stderr);
  });

  it('every metric named in the rules and the dashboard is exported by the server', async () => {
    const t = await startTestServer();
    let exported: Set<string>;
    try {
      const text = await (await fetch(`http://127.0.0.1:${t.server.admin!.address.port}/metrics`)).text();
      exported = new Set<string>();
      for (const line of text.split('\n')) {
        const m = /^# TYPE (\S+) (\S+)/.exec(line);
        if (!m) continue;
        exported.add(m[1]!);
        if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(`${m[1]}${s}`);
      }
    } finally {
      await t.stop();
    }
    const dashboard = JSON.parse(await readFile(infra('grafana/postern.json'), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const sources = [
      ...dashboard.panels.flatMap((p) => p.targets.map((x) => x.expr)),
      await readFile(infra('prometheus/alerts.yml'), 'utf8'),
    ];
    const used = new Set(sources.flatMap((s) => s.match(/postern_[a-z0-9_]+/g) ?? []));
    assert.ok(used.size >= 10, `expected the dashboard and rules to use many metrics, found ${used.size}`);
    const missing = [...used].filter((name) => !exported.has(name));
    assert.deepEqual(missing, [], 'metrics used but not exported');
  });
});

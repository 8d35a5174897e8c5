import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../src/index.js';

test('disabled metrics record nothing and say so; enabled ones record', async () => {
  const off = new Metrics({ disabled: true, processMetrics: true });
  off.connections.inc({ listener: 'pop3', result: 'accepted' });
  off.sessionsActive.dec({ state: 'transaction' });
  off.commandDuration.observe({ command: 'RETR' }, 0.01);
  off.connectionLimit.set(5);
  assert.equal(await off.text(), '# metrics disabled (METRICS=off)\n');
  assert.equal((await off.registry.getMetricsAsJSON()).length, 0);

  const on = new Metrics({ processMetrics: false });
  on.connections.inc({ listener: 'pop3', result: 'accepted' });
  assert.match(await on.text(), /postern_connections_total\{listener="pop3",result="accepted"\} 1/);
});

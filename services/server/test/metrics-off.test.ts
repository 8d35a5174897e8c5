// METRICS=off (for measuring what metrics cost): the service works as before, nothing is
// recorded, and /metrics says that metrics are disabled.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lmtpSend } from './support/lmtp-client.js';
import { address, simpleMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { startTestServer } from './support/server.js';

test('METRICS=off: sessions are served, /metrics holds no metric and says why', async () => {
  const t = await startTestServer({ users: { alice: 'alice-secret' }, env: { METRICS: 'off' } });
  try {
    const sent = await lmtpSend(t.lmtpPort, 's@example.com', [address('alice')], simpleMessage('metrics-off').delivered);
    assert.deepEqual(sent.data.map((r) => r.code), [250]);
    const c = await Pop3Client.connect(t.pop3Port);
    await c.login('alice', 'alice-secret');
    assert.match((await c.multi('RETR 1')).status, /^\+OK/);
    await c.quit();
    const port = t.server.admin?.address.port;
    assert.ok(port);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '# metrics disabled (METRICS=off)\n');
  } finally {
    await t.stop();
  }
});

// /healthz and /readyz: ready only while serving with reachable backends, not while draining.
import assert from 'node:assert/strict';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Pop3Client } from './support/pop3-client.js';
import { startTestServer } from './support/server.js';

test('readyz follows the backends and the drain; healthz stays up', async () => {
  const t = await startTestServer({ users: { alice: 'alice-secret' } });
  let stopped: Promise<void> | null = null;
  try {
    const base = `http://127.0.0.1:${t.server.admin!.address.port}`;
    const get = async (path: string) => {
      const r = await fetch(`${base}${path}`);
      return { status: r.status, body: await r.text() };
    };
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get('/readyz'), { status: 200, body: 'ready\n' });

    const passwd = join(t.dataDir, 'passwd');
    await rename(passwd, `${passwd}.away`);
    const missing = await get('/readyz');
    assert.equal(missing.status, 503);
    assert.match(missing.body, /password file .*ENOENT/);
    await rename(`${passwd}.away`, passwd);
    assert.equal((await get('/readyz')).status, 200);

    // Draining: a logged-in session keeps the drain going; meanwhile the pod is not ready.
    const c = await Pop3Client.connect(t.pop3Port);
    await c.login('alice', 'alice-secret');
    stopped = t.server.stop(30_000);
    assert.deepEqual(await get('/readyz'), { status: 503, body: 'not ready: draining\n' });
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    await c.quit();
    await stopped;
  } finally {
    if (stopped === null) await t.server.stop(0);
    await t.stop().catch(() => undefined);
  }
});

// The idle timeout after login ends the session without committing anything, and frees the
// maildrop for the next login. (The service's config keeps it at 10 minutes or more, as RFC 1939
// asks; the gateway takes any value, which lets this test use a short one.)
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { PasswdFileBackend, inlineVerifier } from '@postern/accounts';
import { MemoryLockManager } from '@postern/locks';
import { MemoryStore } from '@postern/mailstore';
import { Metrics, createLogger } from '@postern/telemetry';
import { DEFAULT_GATEWAY_SETTINGS, startGateway } from '../src/index.js';

/** Everything the server sends until it closes the connection, for a scripted client. */
async function converse(port: number, script: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.setEncoding('latin1');
  let received = '';
  socket.on('data', (d: string) => (received += d));
  socket.write(script);
  await once(socket, 'close');
  return received;
}

test('idle after login: -ERR, connection closed, DELE not committed, maildrop free again', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'postern-gw-'));
  const passwd = join(dir, 'passwd');
  await writeFile(passwd, 'alice:{PLAIN}secret\n');
  const accounts = await PasswdFileBackend.open({ path: passwd, verifier: inlineVerifier, watch: false });
  const store = new MemoryStore();
  await store.deliver({ id: 'alice', username: 'alice' }, Readable.from([Buffer.from('Subject: a\r\n\r\nbody\r\n')]));
  const gateway = await startGateway({
    settings: { ...DEFAULT_GATEWAY_SETTINGS, pop3: { host: '127.0.0.1', port: 0 }, pop3s: null, tls: null, idleTimeoutMs: 300 },
    accounts,
    store,
    locks: new MemoryLockManager(),
    logger: createLogger({ service: 'test', level: 'silent' }),
    metrics: new Metrics({ processMetrics: false }),
  });
  try {
    const port = gateway.pop3!.port;
    const first = await converse(port, 'USER alice\r\nPASS secret\r\nDELE 1\r\n');
    assert.match(first, /\+OK Message 1 deleted\.\r\n-ERR Disconnected for inactivity\.\r\n$/);
    // Nothing was committed, and the lock was released: the next session sees the message.
    const second = await converse(port, 'USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n');
    assert.match(second, /\+OK 1 \d+\r\n/);
    assert.equal((await store.stat({ id: 'alice', username: 'alice' })).count, 1);
  } finally {
    await gateway.close(0);
    await accounts.close();
    await rm(dir, { recursive: true, force: true });
  }
});

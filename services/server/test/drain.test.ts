// Stopping the gateway while a client has stopped reading in the middle of a RETR: the drain
// must still finish (the stuck connection is dropped), and nothing is committed.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { listMaildir } from './support/maildir.js';
import { bigMessage, deliverAll } from './support/messages.js';
import { startTestServer } from './support/server.js';

test('stop() drops a session blocked writing to a client that stopped reading', { timeout: 60_000 }, async () => {
  const t = await startTestServer({ users: { alice: 'alice-secret' } });
  let stopped = false;
  try {
    // Larger than the socket buffers on both sides, so the server's writes really block.
    await deliverAll(t.lmtpPort, ['alice'], [bigMessage(24 * 1024 * 1024)]);
    const before = await listMaildir(t.maildir('alice'));
    const socket = connect({ host: '127.0.0.1', port: t.pop3Port });
    socket.setEncoding('latin1');
    let received = '';
    let paused = false;
    const retrStarted = new Promise<void>((resolve) => {
      socket.on('data', (d: string) => {
        if (paused) return;
        received += d;
        if (received.includes('octets\r\n')) {
          paused = true;
          socket.pause(); // stop reading: the server's writes back up
          resolve();
        }
      });
    });
    socket.write(`USER alice\r\nPASS alice-secret\r\nDELE 1\r\nRSET\r\nRETR 1\r\n`);
    await retrStarted;
    const closed = once(socket, 'close');
    await t.server.stop(0);
    stopped = true;
    socket.resume(); // read what was buffered, then see the end the server sent
    await closed;
    assert.deepEqual(await listMaildir(t.maildir('alice')), before, 'nothing deleted or moved');
    assert.ok(
      t.logs.some((l) => l.includes('"session end"') && l.includes('"user":"alice"')),
      'the session ended and was logged',
    );
  } finally {
    if (!stopped) await t.server.stop(0);
    await t.stop().catch(() => undefined);
  }
});

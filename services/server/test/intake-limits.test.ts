// MAX_INTAKE_CONNECTIONS: an MTA connection past the limit is turned away with a 4xx greeting
// (the MTA retries later); the ones already open keep working.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from './support/server.js';

function greeting(port: number): Promise<{ line: string; close(): void }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setEncoding('latin1');
    let buffer = '';
    socket.on('error', reject);
    socket.on('data', (d: string) => {
      buffer += d;
      const end = buffer.indexOf('\r\n');
      if (end !== -1) resolve({ line: buffer.slice(0, end), close: () => socket.destroy() });
    });
    once(socket, 'close').then(() => reject(new Error(`closed before a greeting: ${JSON.stringify(buffer)}`)));
  });
}

describe('MAX_INTAKE_CONNECTIONS', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ env: { MAX_INTAKE_CONNECTIONS: '1' } });
  });
  after(() => srv?.stop());

  it('refuses a second LMTP connection with 421 while the first is open', async () => {
    const first = await greeting(srv.lmtpPort);
    assert.match(first.line, /^220 /);
    const second = await greeting(srv.lmtpPort);
    assert.match(second.line, /^421 /);
    second.close();
    first.close();
  });
});

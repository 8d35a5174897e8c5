// SIGHUP re-reads CONFIG_FILE and applies the POP3 limits to new connections without a restart;
// keys that cannot change live are logged as needing a restart.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMainProcess, type MainProcess } from './support/main-process.js';

/** Connects and resolves with the first line the server sends (the greeting or a refusal). */
async function firstLine(port: number): Promise<{ socket: Socket; line: string }> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.setEncoding('latin1');
  let text = '';
  while (!text.includes('\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [string];
    text += chunk;
  }
  return { socket, line: text.slice(0, text.indexOf('\r\n')) };
}

/** Sends one command and resolves with the reply's first line. */
async function command(socket: Socket, line: string): Promise<string> {
  socket.write(`${line}\r\n`);
  let text = '';
  while (!text.includes('\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [string];
    text += chunk;
  }
  return text.slice(0, text.indexOf('\r\n'));
}

const message = (msg: string) => (line: string): boolean => {
  try {
    return (JSON.parse(line) as { msg?: string }).msg === msg;
  } catch {
    return false;
  }
};

describe('SIGHUP reloads the connection limits', () => {
  let server: MainProcess;
  let configFile: string;
  const open: Socket[] = [];

  before(async () => {
    server = await startMainProcess({
      name: 'reload',
      prepare: async (dataDir) => {
        configFile = join(dataDir, 'postern.yaml');
        await writeFile(configFile, 'max_connections_per_ip: 2\nmax_message_size: 1048576\n');
        return { CONFIG_FILE: configFile };
      },
    });
  });
  after(async () => {
    for (const s of open) s.destroy();
    await server?.stop();
  });

  it('a lower MAX_CONNECTIONS_PER_IP refuses a connection the old limit allowed; open sessions go on; other keys need a restart', async () => {
    const a = await firstLine(server.pop3Port);
    open.push(a.socket);
    assert.match(a.line, /^\+OK/);
    // Under the old limit (2) a second connection from the same address is served.
    const b = await firstLine(server.pop3Port);
    open.push(b.socket);
    assert.match(b.line, /^\+OK/);
    const bEnded = server.process.waitForLine(message('session end'));
    assert.match(await command(b.socket, 'QUIT'), /^\+OK/);
    await bEnded;

    await writeFile(configFile, 'max_connections_per_ip: 1\nmax_message_size: 2097152\n');
    const reloaded = server.process.waitForLine(message('configuration reloaded'));
    const restart = server.process.waitForLine(message('configuration change needs a restart'));
    server.process.signal('SIGHUP');
    const applied = (JSON.parse(await reloaded) as { applied: Record<string, unknown> }).applied;
    assert.equal(applied.MAX_CONNECTIONS_PER_IP, 1);
    assert.deepEqual((JSON.parse(await restart) as { keys: string[] }).keys, ['MAX_MESSAGE_SIZE']);

    // Same situation as for b (one connection open), now refused.
    const c = await firstLine(server.pop3Port);
    open.push(c.socket);
    assert.equal(c.line, '-ERR [SYS/TEMP] Too many connections, try again later.');
    // The session that was already open is not touched.
    assert.match(await command(a.socket, 'CAPA'), /^\+OK/);
  });
});

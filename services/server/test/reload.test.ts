// SIGHUP re-reads CONFIG_FILE and applies the POP3 limits to new connections without a restart;
// keys that cannot change live are logged as needing a restart.
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
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

/** main.ts with two POP3 workers and a CONFIG_FILE (max_connections_per_ip: 5), its JSON log records collected. */
async function startWorkersWithConfig(name: string): Promise<{
  server: MainProcess;
  configFile: string;
  records: Record<string, unknown>[];
  /** Resolves once `check` holds for the records so far; fails after 60 s naming `what`. */
  until(check: () => boolean, what: string): Promise<void>;
}> {
  const records: Record<string, unknown>[] = [];
  const events = new EventEmitter();
  let configFile = '';
  const server = await startMainProcess({
    name,
    env: { WORKERS: '2' },
    prepare: async (dataDir) => {
      configFile = join(dataDir, 'postern.yaml');
      await writeFile(configFile, 'max_connections_per_ip: 5\n');
      return { CONFIG_FILE: configFile };
    },
    onLine: (line) => {
      if (!line.startsWith('{')) return;
      records.push(JSON.parse(line) as Record<string, unknown>);
      events.emit('record');
    },
  });
  const until = (check: () => boolean, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        events.off('record', test);
        reject(new Error(`not seen within 60 s: ${what}; log messages: ${records.map((r) => String(r.msg)).join(' | ')}`));
      }, 60_000);
      const test = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        events.off('record', test);
        resolve();
      };
      events.on('record', test);
      test();
    });
  return { server, configFile, records, until };
}

describe('SIGHUP with worker processes', () => {
  let started: Awaited<ReturnType<typeof startWorkersWithConfig>> | undefined;
  before(async () => {
    started = await startWorkersWithConfig('reload-workers');
  });
  after(async () => started?.server.stop());

  it('the primary and every POP3 worker apply the new limits', async () => {
    const { server, configFile, records, until } = started as NonNullable<typeof started>;
    // Both workers listen (and so handle SIGHUP) before the signal.
    await until(() => records.filter((r) => r.msg === 'POP3 listening').length === 2, 'both workers listening');
    await writeFile(configFile, 'max_connections_per_ip: 1\n');
    const reloaded = (): Record<string, unknown>[] => records.filter((r) => r.msg === 'configuration reloaded');
    server.process.signal('SIGHUP');
    await until(() => reloaded().length === 3, 'three reloads (the primary and both workers)');
    for (const r of reloaded()) assert.equal((r.applied as Record<string, unknown>).MAX_CONNECTIONS_PER_IP, 1);
    assert.deepEqual(reloaded().map((r) => r.worker !== undefined).sort(), [false, true, true]);
  });
});

describe('SIGHUP while the POP3 workers are still starting', () => {
  let started: Awaited<ReturnType<typeof startWorkersWithConfig>> | undefined;
  after(async () => started?.server.stop());

  it('no worker dies of it, and every process ends up with the new configuration', async () => {
    started = await startWorkersWithConfig('reload-early');
    const { server, configFile, records, until } = started;
    // The primary is up (its admin port accepts) and has just forked the workers, which are
    // loading or starting: the signal reaches them at the worst moment.
    await writeFile(configFile, 'max_connections_per_ip: 1\n');
    server.process.signal('SIGHUP');
    const reloaded = (): Record<string, unknown>[] => records.filter((r) => r.msg === 'configuration reloaded');
    await until(
      () => records.filter((r) => r.msg === 'POP3 listening').length >= 2 && reloaded().filter((r) => r.worker !== undefined).length >= 2,
      'both workers listening and reloaded',
    );
    assert.equal(records.filter((r) => r.msg === 'POP3 worker died, replacing it').length, 0);
    for (const r of reloaded()) assert.equal((r.applied as Record<string, unknown>).MAX_CONNECTIONS_PER_IP, 1);
  });
});

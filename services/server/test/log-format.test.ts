// LOG_FORMAT with the server process: JSON lines when stdout is a pipe (the default, what log
// collectors read), pretty lines when it is a terminal (a pseudo-terminal from `script`).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startMainProcess, type MainProcess } from './support/main-process.js';

const PRETTY = /^\d\d:\d\d:\d\d\.\d\d\d \S*INFO\S* +POP3 listening pop3=\{/;

describe('LOG_FORMAT', () => {
  const started: MainProcess[] = [];
  after(async () => {
    await Promise.all(started.map((s) => s.stop()));
  });

  async function listeningLine(options: { pty: boolean; env?: Record<string, string> }): Promise<string> {
    const name = options.pty ? 'log-format-pty' : 'log-format-pipe';
    // The line is written before the admin port (readiness) opens: collect from the start.
    const lines: string[] = [];
    const server = await startMainProcess({ name, pty: options.pty, ...(options.env ? { env: options.env } : {}), onLine: (l) => lines.push(l) });
    started.push(server);
    const found = lines.find((l) => l.includes('POP3 listening')) ?? (await server.process.waitForLine((l) => l.includes('POP3 listening')));
    return found.replace(/\r$/, '');
  }

  it('auto (the default) in a pipe: JSON', async () => {
    const record = JSON.parse(await listeningLine({ pty: false })) as Record<string, unknown>;
    assert.equal(record.msg, 'POP3 listening');
    assert.equal(record.level, 'info');
  });

  it('auto on a terminal: pretty', async () => {
    assert.match(await listeningLine({ pty: true }), PRETTY);
  });

  it('LOG_FORMAT=json on a terminal: JSON', async () => {
    const line = await listeningLine({ pty: true, env: { LOG_FORMAT: 'json' } });
    assert.equal((JSON.parse(line) as Record<string, unknown>).msg, 'POP3 listening');
  });

  it('LOG_FORMAT=pretty in a pipe: pretty', async () => {
    assert.match(await listeningLine({ pty: false, env: { LOG_FORMAT: 'pretty' } }), PRETTY);
  });
});

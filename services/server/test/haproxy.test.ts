// Behind a real HAProxy (Debian's) in TCP mode: PROXY protocol v1 and v2, plain and on 995. The
// client connects from 127.0.0.2 and HAProxy from 127.0.0.1, so the log shows whether the server
// took the client address from the header. A spoofed header from an untrusted peer is refused.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { requireProgram } from './support/run.js';
import { startTestServer, type LogRecord, type TestServer } from './support/server.js';

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once something accepts connections on the port (HAProxy has bound it). */
async function accepting(port: number, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Talk POP3 over `socket`: send each command after the previous reply, return all replies. */
async function session(socket: Socket | ReturnType<typeof tlsConnect>, commands: string[]): Promise<string> {
  socket.setEncoding('latin1');
  let received = '';
  let waiting: (() => void) | null = null;
  socket.on('data', (d: string) => {
    received += d;
    waiting?.();
  });
  const nextReply = (count: number) =>
    new Promise<void>((resolve) => {
      const check = (): void => {
        if ((received.match(/\r\n/g) ?? []).length >= count) {
          waiting = null;
          resolve();
        }
      };
      waiting = check;
      check();
    });
  let lines = 1;
  await nextReply(lines);
  for (const c of commands) {
    socket.write(`${c}\r\n`);
    await nextReply(++lines);
  }
  socket.end();
  return received;
}

describe('behind HAProxy (PROXY protocol)', () => {
  let t: TestServer;
  let haproxy: ChildProcess;
  let dir = '';
  const ports = { v1: 0, v2: 0, tls: 0 };

  before(async () => {
    const binary = requireProgram('haproxy');
    t = await startTestServer({ users: { alice: 'alice-secret' }, env: { PROXY_TRUSTED_NETWORKS: '127.0.0.1' } });
    dir = await mkdtemp(join(tmpdir(), 'postern-haproxy-'));
    ports.v1 = await freePort();
    ports.v2 = await freePort();
    ports.tls = await freePort();
    const config = [
      'global',
      '  maxconn 100',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      `frontend v1`,
      `  bind 127.0.0.1:${ports.v1}`,
      `  default_backend pop3_v1`,
      `backend pop3_v1`,
      `  server s1 127.0.0.1:${t.pop3Port} send-proxy`,
      `frontend v2`,
      `  bind 127.0.0.1:${ports.v2}`,
      `  default_backend pop3_v2`,
      `backend pop3_v2`,
      `  server s1 127.0.0.1:${t.pop3Port} send-proxy-v2`,
      `frontend tls`,
      `  bind 127.0.0.1:${ports.tls}`,
      `  default_backend pop3s_v2`,
      `backend pop3s_v2`,
      `  server s1 127.0.0.1:${t.pop3sPort} send-proxy-v2`,
      '',
    ].join('\n');
    await writeFile(join(dir, 'haproxy.cfg'), config);
    haproxy = spawn(binary, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'inherit'] });
    await Promise.all([accepting(ports.v1), accepting(ports.v2), accepting(ports.tls)]);
  });

  after(async () => {
    if (haproxy && haproxy.exitCode === null) {
      haproxy.kill('SIGTERM');
      await once(haproxy, 'exit');
    }
    await t?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const ended = (ip: string) => (r: LogRecord) => r.msg === 'session end' && r.user === 'alice' && r.ip === ip;

  for (const which of ['v1', 'v2'] as const) {
    it(`PROXY ${which}: the session works and the log has the client's address, not HAProxy's`, async () => {
      const logged = t.waitForLog(ended('127.0.0.2'));
      const socket = connect({ host: '127.0.0.1', port: ports[which], localAddress: '127.0.0.2' });
      const replies = await session(socket, ['USER alice', 'PASS alice-secret', 'STAT', 'QUIT']);
      assert.match(replies, /^\+OK .*\r\n\+OK .*\r\n\+OK Logged in.*\r\n\+OK 0 0\r\n\+OK .*signing off/s);
      const record = await logged;
      assert.equal(record.ip, '127.0.0.2');
    });
  }

  it('PROXY v2 in front of implicit TLS (995): handshake and session work, client address logged', async () => {
    const ca = await readFile(t.certFile);
    const logged = t.waitForLog(ended('127.0.0.2'));
    const tcp = connect({ host: '127.0.0.1', port: ports.tls, localAddress: '127.0.0.2' });
    const socket = tlsConnect({ socket: tcp, ca, servername: 'localhost' });
    await once(socket, 'secureConnect');
    const replies = await session(socket, ['USER alice', 'PASS alice-secret', 'QUIT']);
    assert.match(replies, /\+OK Logged in/);
    assert.equal((await logged).ip, '127.0.0.2');
  });

  it('a spoofed header from an untrusted address is refused and its claimed address is not used', async () => {
    const refused = t.waitForLog((r) => r.msg === 'session end' && r.ip === '127.0.0.3');
    const socket = connect({ host: '127.0.0.1', port: t.pop3Port, localAddress: '127.0.0.3' });
    socket.setEncoding('latin1');
    let received = '';
    socket.on('data', (d: string) => (received += d));
    socket.write('PROXY TCP4 203.0.113.9 127.0.0.1 40000 110\r\nUSER alice\r\n');
    await once(socket, 'close');
    assert.match(received, /^\+OK .*\r\n-ERR PROXY header not accepted from your address\.\r\n$/);
    const record = await refused;
    assert.equal(record.result, 'spoofed PROXY header');
    assert.ok(!t.logs.some((l) => l.includes('203.0.113.9')), 'the claimed address never reaches the log');
  });

  it('a trusted peer that sends no PROXY header gets no greeting and is disconnected', async () => {
    const socket = connect({ host: '127.0.0.1', port: t.pop3Port });
    socket.setEncoding('latin1');
    let received = '';
    socket.on('data', (d: string) => (received += d));
    socket.write('USER alice\r\n');
    await once(socket, 'close');
    assert.equal(received, '');
  });
});

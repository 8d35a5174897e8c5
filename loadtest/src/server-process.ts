// Running a server under test as a child process: a free loopback port, waiting until it greets,
// and stopping it by PID.

import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Pop3Client, Pop3Error } from './pop3-client.js';

/** A port that was free on `host` a moment ago (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('no port assigned'));
      });
    });
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

export class ServerExitedError extends Error {
  override name = 'ServerExitedError';
}

export interface WaitForGreetingOptions {
  host: string;
  port: number;
  /** The server process: if it exits first, waiting fails at once. */
  child?: ChildProcess;
  /** The greeting must contain this text (to be sure it is our server on the port). */
  greetingIncludes?: string;
  timeoutMs?: number;
  tls?: boolean;
}

/**
 * Waits until a POP3 server accepts a connection on host:port and greets with +OK: retries while
 * the connection is refused, fails at once if `child` exits, and gives up after `timeoutMs`.
 */
export async function waitForGreeting(opts: WaitForGreetingOptions): Promise<string> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let exitInfo: string | null = null;
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    exitInfo = `exited with ${signal ?? `code ${code}`}`;
  };
  opts.child?.once('exit', onExit);
  if (opts.child !== undefined && (opts.child.exitCode !== null || opts.child.signalCode !== null)) {
    onExit(opts.child.exitCode, opts.child.signalCode);
  }
  let delay = 10;
  try {
    for (;;) {
      if (exitInfo !== null) throw new ServerExitedError(`server ${exitInfo} before it accepted connections`);
      let client: Pop3Client | null = null;
      try {
        client = await Pop3Client.connect({
          host: opts.host,
          port: opts.port,
          timeoutMs: 5_000,
          tls: opts.tls === true ? { rejectUnauthorized: false } : undefined,
        });
        const text = client.greeting.text;
        if (opts.greetingIncludes !== undefined && !text.includes(opts.greetingIncludes)) {
          throw new ServerExitedError(`another server answers on ${opts.host}:${opts.port}: ${text}`);
        }
        await client.quit().catch(() => undefined);
        return text;
      } catch (err) {
        client?.destroy();
        const refused = err instanceof Pop3Error && (err.code === 'connect' || err.code === 'closed');
        if (!refused) throw err;
        if (Date.now() > deadline) {
          throw new Error(`no POP3 greeting on ${opts.host}:${opts.port} within ${opts.timeoutMs ?? 30_000} ms`, {
            cause: err,
          });
        }
      }
      // The port does not accept yet: try again shortly (or stop as soon as the child exits).
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(t);
          opts.child?.off('exit', wake);
          resolve();
        };
        const t = setTimeout(wake, delay);
        opts.child?.once('exit', wake);
      });
      delay = Math.min(delay * 2, 200);
    }
  } finally {
    opts.child?.off('exit', onExit);
  }
}

/**
 * Stops a child: SIGTERM (to its process group when `group`), then SIGKILL after `graceMs`.
 * Resolves when it has exited.
 */
export async function stopProcess(child: ChildProcess, opts: { graceMs?: number; group?: boolean } = {}): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const pid = child.pid;
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(opts.group === true ? -pid : pid, sig);
    } catch {
      // already gone
    }
  };
  const done = exited(child);
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), opts.graceMs ?? 10_000);
  await done;
  clearTimeout(timer);
}

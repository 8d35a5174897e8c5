/**
 * A server started as a plain child process: readiness by TCP connect (never by sleeping),
 * and stop/kill/pause/resume by its own PID only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';

/** Absolute path of `name` on PATH (plus the usual sbin directories); throws naming the package. */
export function findProgram(name: string, debianPackage: string, extraDirs: readonly string[] = []): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', ...extraDirs];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is required but not installed (install: ${debianPackage}; npm test installs it)`);
}

export interface ManagedProcessOptions {
  readonly name: string;
  readonly program: string;
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Ready when a TCP connection to this port on 127.0.0.1 succeeds. */
  readonly port: number;
  readonly readyTimeoutMs?: number;
  /** Polled after the port accepts, within the same deadline, until true (e.g. Redis past loading its AOF). */
  readonly ready?: () => Promise<boolean>;
}

/** Resolves once something accepts on 127.0.0.1:port; rejects after the deadline or when `died` fires. */
export async function waitForPort(port: number, timeoutMs: number, died?: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    const death = died?.();
    if (death) throw new Error(death);
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

export class ManagedProcess {
  readonly options: ManagedProcessOptions;
  private child: ChildProcess | null = null;
  private output: string[] = [];
  private exited: Promise<void> = Promise.resolve();
  private exitInfo: string | null = null;
  private readonly lineListeners = new Set<(line: string) => void>();
  private partial = '';

  private constructor(options: ManagedProcessOptions) {
    this.options = options;
  }

  static async start(options: ManagedProcessOptions): Promise<ManagedProcess> {
    const p = new ManagedProcess(options);
    await p.start();
    return p;
  }

  /** Not started yet: attach `onLine` listeners first, then `start()`. */
  static create(options: ManagedProcessOptions): ManagedProcess {
    return new ManagedProcess(options);
  }

  /** Calls `listener` with every output line (stdout and stderr) from now on, across restarts. */
  onLine(listener: (line: string) => void): void {
    this.lineListeners.add(listener);
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** The last lines the process printed (for error messages). */
  tail(lines = 30): string {
    return this.output.join('').split('\n').slice(-lines).join('\n');
  }

  /**
   * Resolves with the first output line (stdout or stderr) matching `match` printed after this
   * call; rejects after `timeoutMs` with the process's last lines.
   */
  waitForLine(match: (line: string) => boolean, timeoutMs = 15_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const listener = (line: string): void => {
        if (!match(line)) return;
        clearTimeout(timer);
        this.lineListeners.delete(listener);
        resolve(line);
      };
      const timer = setTimeout(() => {
        this.lineListeners.delete(listener);
        reject(new Error(`${this.options.name}: no matching output line within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      this.lineListeners.add(listener);
    });
  }

  /** (Re)start the process and wait until its port accepts. */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.options.name} is already running`);
    this.exitInfo = null;
    const child = spawn(this.options.program, [...this.options.args], {
      cwd: this.options.cwd,
      env: { ...process.env, ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (d: Buffer) => {
      const text = d.toString('utf8');
      this.output.push(text);
      if (this.output.length > 200) this.output.splice(0, this.output.length - 200);
      if (this.lineListeners.size === 0) return;
      const lines = (this.partial + text).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) for (const listener of this.lineListeners) listener(line);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = `${this.options.name} exited (code ${code}, signal ${signal})`;
        if (this.child === child) this.child = null;
        resolve();
      });
      child.once('error', (e) => {
        this.exitInfo = `${this.options.name} failed to start: ${e.message}`;
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    try {
      const deadline = Date.now() + (this.options.readyTimeoutMs ?? 30_000);
      await waitForPort(this.options.port, this.options.readyTimeoutMs ?? 30_000, () =>
        this.exitInfo ? `${this.exitInfo}\n${this.tail()}` : null,
      );
      while (this.options.ready && !(await this.options.ready().catch(() => false))) {
        if (this.exitInfo) throw new Error(`${this.exitInfo}\n${this.tail()}`);
        if (Date.now() > deadline) throw new Error(`${this.options.name} accepts on ${this.options.port} but is not ready`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Send a signal to this process only (SIGSTOP/SIGCONT to pause and resume). */
  signal(signal: NodeJS.Signals): void {
    if (!this.child?.pid) throw new Error(`${this.options.name} is not running`);
    process.kill(this.child.pid, signal);
  }

  /**
   * SIGSTOP, resolved once every thread of the process is stopped (state T in /proc), so a
   * request sent afterwards cannot be served by a thread that had not stopped yet.
   */
  async pause(timeoutMs = 5_000): Promise<void> {
    this.signal('SIGSTOP');
    const pid = this.child?.pid;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let running = 0;
      try {
        for (const task of await readdir(`/proc/${pid}/task`)) {
          const stat = await readFile(`/proc/${pid}/task/${task}/stat`, 'utf8').catch(() => '');
          // The state is the field after the parenthesised command name.
          const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
          if (state !== '' && state !== 'T' && state !== 't') running++;
        }
      } catch {
        return; // no /proc (not Linux): the signal is all we can do
      }
      if (running === 0) return;
      if (Date.now() > deadline) throw new Error(`${this.options.name}: ${running} thread(s) still running ${timeoutMs} ms after SIGSTOP`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** SIGCONT after `pause()`. */
  resume(): void {
    this.signal('SIGCONT');
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  async stop(graceMs = 5_000): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    try {
      process.kill(child.pid, 'SIGCONT');
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** SIGKILL (a crash); resolves when it has exited. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone
    }
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

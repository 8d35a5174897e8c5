/** Runs the real client programs the end-to-end tests drive; a missing one is an error, not a skip. */
import { spawn } from 'node:child_process';
import { findProgram } from '@postern/testkit';

/** Debian package that provides each program the tests use. */
export const PACKAGES: Readonly<Record<string, string>> = {
  curl: 'curl',
  script: 'bsdutils',
  fetchmail: 'fetchmail',
  mpop: 'mpop',
  getmail: 'getmail6',
  python3: 'python3',
  openssl: 'openssl',
  doveadm: 'dovecot-core',
  promtool: 'prometheus',
  haproxy: 'haproxy',
};

/** The program's path; throws naming the Debian package to install when it is missing. */
export function requireProgram(name: string): string {
  return findProgram(name, PACKAGES[name] ?? name);
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  readonly input?: string | Buffer;
  /** Kill the program after this long (a hung client must not hang the suite). */
  readonly timeoutMs?: number;
}

export function run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const path = requireProgram(program);
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, {
      cwd: options.cwd,
      env: { ...process.env, LANG: 'C.UTF-8', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Like `run`, but fails with the program's output unless it exits 0. */
export async function runOk(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(program, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${program} ${args.join(' ')} exited with ${result.code ?? result.signal}\n--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout
        .toString('utf8')
        .slice(0, 4000)}`,
    );
  }
  return result;
}

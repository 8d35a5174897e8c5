/** Runs the CLI from source as a child process, as an operator would. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
export const TSX = import.meta.resolve('tsx');

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], options: { input?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, PASSWD_FILE: undefined, DATA_DIR: undefined, ...options.env };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const child = spawn(process.execPath, ['--conditions=development', '--import', TSX, MAIN, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: env as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}


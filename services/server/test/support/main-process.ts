/**
 * `main.ts` as a child process (the server as operators run it), ready when its admin port
 * accepts, with its own data directory and free loopback ports. Optionally on a pseudo-terminal
 * (util-linux `script`), which forwards SIGTERM to the server.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, freePort } from '@postern/testkit';
import { requireProgram } from './run.js';
import { sharedTls } from './tls.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MAIN = join(ROOT, 'services/server/src/main.ts');

export interface MainProcess {
  readonly process: ManagedProcess;
  readonly dataDir: string;
  readonly pop3Port: number;
  readonly adminPort: number;
  /** Stops the server (SIGTERM, drain) and removes its data directory. */
  stop(): Promise<void>;
}

export interface MainProcessOptions {
  readonly name: string;
  /** Settings on top of the test defaults (loopback ports, the shared test certificate, WORKERS=1). */
  readonly env?: Record<string, string>;
  /** user -> plaintext password in the password file. */
  readonly users?: Record<string, string>;
  /** Run on a pseudo-terminal (stdout is a TTY) instead of pipes. */
  readonly pty?: boolean;
  /** Called with the data directory before the server starts (e.g. to write a CONFIG_FILE). */
  readonly prepare?: (dataDir: string) => Promise<Record<string, string>>;
  /** Every output line from the start (stdout and stderr). */
  readonly onLine?: (line: string) => void;
}

export async function startMainProcess(options: MainProcessOptions): Promise<MainProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), `postern-${options.name}-`));
  const users = options.users ?? { alice: 'alice-secret' };
  await writeFile(join(dataDir, 'passwd'), Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}\n`).join(''), { mode: 0o600 });
  const tls = await sharedTls();
  const [pop3Port, adminPort] = [await freePort(), await freePort()];
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    POP3_LISTEN: `127.0.0.1:${pop3Port}`,
    POP3S_LISTEN: 'off',
    LMTP_LISTEN: 'off',
    ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    TLS_CERT: tls.cert,
    TLS_KEY: tls.key,
    WORKERS: '1',
    AUTH_FAILURE_DELAY_MS: '0',
    ...options.env,
    ...(options.prepare ? await options.prepare(dataDir) : {}),
  };
  const node = [process.execPath, '--conditions=development', '--import', 'tsx', MAIN];
  const quoted = node.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const process_ = ManagedProcess.create({
    name: options.name,
    program: options.pty ? requireProgram('script') : process.execPath,
    args: options.pty ? ['-qec', `exec ${quoted}`, '/dev/null'] : node.slice(1),
    cwd: ROOT,
    env,
    port: adminPort,
  });
  if (options.onLine) process_.onLine(options.onLine);
  await process_.start();
  return {
    process: process_,
    dataDir,
    pop3Port,
    adminPort,
    async stop() {
      await process_.stop(10_000);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

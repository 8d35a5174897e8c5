/**
 * Cluster processes for end-to-end tests: gateways and delivery workers started as real
 * child processes (`main.ts gateway|delivery`) on one Redis and one S3 bucket, so they can be
 * killed with SIGKILL, paused with SIGSTOP and restarted like pods.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, freePort } from '@postern/testkit';
import { sharedTls } from './tls.js';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../..', import.meta.url));

export interface ClusterProcess {
  readonly mode: 'gateway' | 'delivery' | 'node';
  readonly proc: ManagedProcess;
  /** POP3 port (gateways, node) or 0. */
  readonly pop3Port: number;
  /** LMTP port (delivery, node) or 0. */
  readonly lmtpPort: number;
  readonly adminPort: number;
  /** Every JSON log line printed so far (parsed). */
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

export interface ClusterFixture {
  readonly dir: string;
  /** Settings shared by every process: the store, Redis, the password file. */
  readonly env: Record<string, string>;
  start(mode: ClusterProcess['mode'], extra?: Record<string, string>): Promise<ClusterProcess>;
  stop(): Promise<void>;
}

/** A private directory with a password file (PLAIN entries) and the shared settings. */
export async function clusterFixture(users: Record<string, string>, shared: Record<string, string>): Promise<ClusterFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'postern-cluster-'));
  const passwd = join(dir, 'passwd');
  await writeFile(passwd, Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}\n`).join(''), { mode: 0o600 });
  const tls = await sharedTls();
  const env: Record<string, string> = {
    PASSWD_FILE: passwd,
    TLS_CERT: tls.cert,
    TLS_KEY: tls.key,
    WORKERS: '1',
    LOG_LEVEL: 'debug',
    AUTH_FAILURE_DELAY_MS: '0',
    ...shared,
  };
  const running = new Set<ClusterProcess>();
  let n = 0;
  return {
    dir,
    env,
    async start(mode, extra = {}) {
      const id = `${mode}-${++n}`;
      const pop3Port = mode === 'delivery' ? 0 : await freePort();
      const lmtpPort = mode === 'gateway' ? 0 : await freePort();
      const adminPort = await freePort();
      const proc = await startLogged(id, mode, {
        ...env,
        DATA_DIR: join(dir, id),
        POP3_LISTEN: pop3Port ? `127.0.0.1:${pop3Port}` : 'off',
        POP3S_LISTEN: 'off',
        LMTP_LISTEN: lmtpPort ? `127.0.0.1:${lmtpPort}` : 'off',
        ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        ...extra,
      }, pop3Port || lmtpPort);
      const p: ClusterProcess = {
        mode,
        proc: proc.proc,
        pop3Port,
        lmtpPort,
        adminPort,
        logs: proc.logs,
        async stop() {
          running.delete(p);
          await proc.proc.stop();
        },
      };
      running.add(p);
      return p;
    },
    async stop() {
      await Promise.all([...running].map((p) => p.stop()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startLogged(name: string, mode: string, env: Record<string, string>, port: number) {
  const logs: Record<string, unknown>[] = [];
  const args = ['--conditions=development', '--import', 'tsx', MAIN, ...(mode === 'node' ? [] : [mode])];
  const proc = ManagedProcess.create({ name, program: process.execPath, args, env, cwd: ROOT, port, readyTimeoutMs: 60_000 });
  proc.onLine((line) => {
    if (!line.startsWith('{')) return;
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log record
    }
  });
  await proc.start();
  return { proc, logs };
}

/** Starts the single node in-process on ephemeral loopback ports, with its own data directory. */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '@postern/telemetry';
import { loadServerConfig, startServer, type RunningServer } from '../../src/index.js';
import { sharedTls } from './tls.js';

/** One parsed JSON log line. */
export type LogRecord = Record<string, unknown> & { readonly msg?: string };

export interface TestServer {
  readonly server: RunningServer;
  readonly dataDir: string;
  readonly pop3Port: number;
  readonly pop3sPort: number;
  readonly lmtpPort: number;
  readonly certFile: string;
  /** JSON log lines written so far. */
  readonly logs: string[];
  maildir(user: string): string;
  /**
   * Resolves with the first matching log record written after this call. Call it before the
   * action that should cause the line, then await it.
   */
  waitForLog(match: (record: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  /** Stops this server and starts a new one on the same data directory (new ports, fresh logs). */
  restart(): Promise<TestServer>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** user -> plaintext password; stored with the PLAIN scheme unless `passwdLines` is given. */
  readonly users?: Record<string, string>;
  readonly passwdLines?: readonly string[];
  /** Settings; TLS_CERT/TLS_KEY default to the certificate shared by this test process. */
  readonly env?: Record<string, string>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'postern-test-'));
  const users = options.users ?? { alice: 'alice-secret', bob: 'bob-secret' };
  const lines = options.passwdLines ?? Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}`);
  await writeFile(join(dataDir, 'passwd'), `${lines.join('\n')}\n`, { mode: 0o600 });
  return launch(dataDir, options);
}

async function launch(dataDir: string, options: TestServerOptions): Promise<TestServer> {
  const tlsEnv: Record<string, string> = {};
  if (options.env?.TLS_CERT === undefined && options.env?.TLS_KEY === undefined) {
    const tls = await sharedTls();
    tlsEnv.TLS_CERT = tls.cert;
    tlsEnv.TLS_KEY = tls.key;
  }
  const config = loadServerConfig({
    env: {
      DATA_DIR: dataDir,
      POP3_LISTEN: '127.0.0.1:0',
      POP3S_LISTEN: '127.0.0.1:0',
      LMTP_LISTEN: '127.0.0.1:0',
      ADMIN_LISTEN: '127.0.0.1:0',
      AUTH_FAILURE_DELAY_MS: '0',
      LOG_LEVEL: 'debug',
      ...tlsEnv,
      ...options.env,
    },
  });
  const logs: string[] = [];
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        logs.push(line);
        events.emit('line', line);
      }
      cb();
    },
  });
  const logger = createLogger({ service: 'postern-test', level: config.LOG_LEVEL, destination });
  const server = await startServer(config, logger);
  const parse = (line: string): LogRecord => JSON.parse(line) as LogRecord;
  return {
    server,
    dataDir,
    pop3Port: server.gateway?.pop3?.port ?? 0,
    pop3sPort: server.gateway?.pop3s?.port ?? 0,
    lmtpPort: server.intake?.address.port ?? 0,
    certFile: config.TLS_CERT ?? join(dataDir, 'tls', 'cert.pem'),
    logs,
    maildir: (user) => join(dataDir, 'mail', user, 'Maildir'),
    waitForLog(match, timeoutMs = 10_000) {
      const waiting = new Promise<LogRecord>((resolve, reject) => {
        const onLine = (line: string): void => {
          const record = parse(line);
          if (!match(record)) return;
          clearTimeout(timer);
          events.off('line', onLine);
          resolve(record);
        };
        const timer = setTimeout(() => {
          events.off('line', onLine);
          reject(new Error(`no matching log line within ${timeoutMs} ms`));
        }, timeoutMs);
        events.on('line', onLine);
      });
      // A test that fails before awaiting this must not also get an unhandled rejection.
      waiting.catch(() => undefined);
      return waiting;
    },
    async restart() {
      await server.stop(0);
      return launch(dataDir, options);
    },
    async stop() {
      await server.stop(0);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Fails when any secret (or its base64 form, as AUTH PLAIN/LOGIN carry it) occurs in the logs. */
export function assertNoSecretsInLogs(logs: readonly string[], secrets: readonly string[]): void {
  if (logs.length === 0) throw new Error('no log lines were collected: nothing to check');
  const forms = new Set<string>();
  for (const s of secrets) {
    forms.add(s);
    forms.add(Buffer.from(s).toString('base64').replace(/=+$/, ''));
  }
  for (const line of logs) {
    for (const form of forms) {
      if (line.includes(form)) throw new Error(`a secret (${JSON.stringify(form)}) appears in the log line: ${line}`);
    }
  }
}

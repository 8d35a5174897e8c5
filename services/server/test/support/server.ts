/** Starts the single node in-process on ephemeral loopback ports, with its own data directory. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '@postern/telemetry';
import { loadServerConfig, startServer, type RunningServer } from '../../src/index.js';

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
  stop(): Promise<void>;
}

export interface TestServerOptions {
  /** user -> plaintext password; stored with the PLAIN scheme unless `passwdLines` is given. */
  readonly users?: Record<string, string>;
  readonly passwdLines?: readonly string[];
  readonly env?: Record<string, string>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'postern-test-'));
  const users = options.users ?? { alice: 'alice-secret', bob: 'bob-secret' };
  const lines = options.passwdLines ?? Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}`);
  await writeFile(join(dataDir, 'passwd'), `${lines.join('\n')}\n`, { mode: 0o600 });
  const config = loadServerConfig({
    env: {
      DATA_DIR: dataDir,
      POP3_LISTEN: '127.0.0.1:0',
      POP3S_LISTEN: '127.0.0.1:0',
      LMTP_LISTEN: '127.0.0.1:0',
      ADMIN_LISTEN: '127.0.0.1:0',
      AUTH_FAILURE_DELAY_MS: '0',
      LOG_LEVEL: 'debug',
      ...options.env,
    },
  });
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line);
      cb();
    },
  });
  const logger = createLogger({ service: 'postern-test', level: config.LOG_LEVEL, destination });
  const server = await startServer(config, logger);
  return {
    server,
    dataDir,
    pop3Port: server.gateway.pop3?.port ?? 0,
    pop3sPort: server.gateway.pop3s?.port ?? 0,
    lmtpPort: server.intake?.address.port ?? 0,
    certFile: join(dataDir, 'tls', 'cert.pem'),
    logs,
    maildir: (user) => join(dataDir, 'mail', user, 'Maildir'),
    async stop() {
      await server.stop(0);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

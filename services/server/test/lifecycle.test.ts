// The server as operators run it: `main.ts` in a child process. Bad settings stop it with exit
// code 2 and a message naming the key; SIGTERM drains, ends open sessions with -ERR [SYS/TEMP]
// without committing their deletions, and exits 0.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { serverSchema, workerCount } from '../src/config.js';
import { uidsOnDisk } from './support/maildir.js';
import { deliverAll, simpleMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { assertNoSecretsInLogs } from './support/server.js';
import { sharedTls } from './support/tls.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = join(ROOT, 'services/server/src/main.ts');
const PASSWORD = 'lifecycle-secret-pw';

/** The parent's environment without any setting of the server, so only `env` configures the child. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const key of [...Object.keys(serverSchema.shape), 'CONFIG_FILE']) delete base[key];
  return { ...base, ...env };
}

interface Child {
  readonly process: ChildProcess;
  readonly stderr: () => string;
  /** JSON log lines (stdout) so far. */
  readonly logs: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * Resolves with the first non-undefined value `check` returns over the log records, looking at
   * those written so far and then at each new one; rejects if the process exits first.
   */
  until<T>(check: (records: readonly Record<string, unknown>[]) => T | undefined): Promise<T>;
}

function startMain(env: Record<string, string>): Child {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', MAIN], {
    cwd: ROOT,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  const logs: string[] = [];
  const records: Record<string, unknown>[] = [];
  const events = new EventEmitter();
  events.setMaxListeners(0);
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    // Checks may look at stderr too (the startup line).
    events.emit('log');
  });
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    let i: number;
    while ((i = stdout.indexOf('\n')) !== -1) {
      const line = stdout.slice(0, i);
      stdout = stdout.slice(i + 1);
      if (!line) continue;
      logs.push(line);
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        continue;
      }
      events.emit('log');
    }
  });
  let exitState: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      exitState = { code, signal };
      events.emit('exit');
      resolve(exitState);
    });
  });
  return {
    process: child,
    stderr: () => stderr,
    logs,
    exited,
    until(check) {
      const waiting = new Promise<NonNullable<ReturnType<typeof check>>>((resolve, reject) => {
        const onLog = (): void => {
          const value = check(records);
          if (value === undefined) return;
          events.off('log', onLog);
          events.off('exit', onExit);
          resolve(value as NonNullable<ReturnType<typeof check>>);
        };
        const onExit = (): void => {
          events.off('log', onLog);
          reject(new Error(`the server exited (${JSON.stringify(exitState)}) first; stderr:\n${stderr}`));
        };
        events.on('log', onLog);
        events.once('exit', onExit);
        onLog();
        if (exitState) onExit();
      });
      waiting.catch(() => undefined);
      return waiting as Promise<never>;
    },
  };
}

const isMsg = (msg: string) => (r: Record<string, unknown>) => r.msg === msg;

/** Starts main.ts on ephemeral ports and learns the bound ports from its log. */
async function startServerProcess(dataDir: string, env: Record<string, string>): Promise<{ child: Child; pop3Port: number; lmtpPort: number }> {
  const tls = await sharedTls();
  const workers = Number(env.WORKERS ?? '1');
  const child = startMain({
    DATA_DIR: dataDir,
    POP3_LISTEN: '127.0.0.1:0',
    POP3S_LISTEN: '127.0.0.1:0',
    LMTP_LISTEN: '127.0.0.1:0',
    ADMIN_LISTEN: '127.0.0.1:0',
    TLS_CERT: tls.cert,
    TLS_KEY: tls.key,
    LOG_LEVEL: 'debug',
    AUTH_FAILURE_DELAY_MS: '0',
    ...env,
  });
  // Every POP3 process is listening (workers that listen on port 0 share one port).
  const pop3Ports = await child.until((rs) => {
    const ports = rs.filter(isMsg('POP3 listening')).map((r) => (r.pop3 as { port: number }).port);
    return ports.length >= workers ? ports : undefined;
  });
  assert.equal(new Set(pop3Ports).size, 1, `all POP3 processes share one port: ${pop3Ports.join(',')}`);
  const lmtpPort = await child.until((rs) => (rs.find(isMsg('LMTP listening'))?.lmtp as { port: number } | undefined)?.port);
  return { child, pop3Port: pop3Ports[0] as number, lmtpPort };
}

describe('configuration errors stop the process with exit code 2, naming the key', () => {
  let dataDir: string;
  const cases: [key: string, env: Record<string, string>][] = [
    ['POP3_LISTEN', { POP3_LISTEN: 'garbage' }],
    ['MAILDIR', { MAILDIR: '/var/mail/Maildir' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'chatty' }],
    ['TLS_KEY', { TLS_CERT: '/nonexistent/cert.pem' }],
  ];
  const results = new Map<string, Promise<{ code: number | null; stderr: string }>>();

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'postern-lifecycle-'));
    // All at once: each is a Node start-up.
    for (const [key, env] of cases) {
      const child = startMain({
        DATA_DIR: join(dataDir, key),
        POP3_LISTEN: '127.0.0.1:0',
        POP3S_LISTEN: '127.0.0.1:0',
        LMTP_LISTEN: '127.0.0.1:0',
        ADMIN_LISTEN: '127.0.0.1:0',
        ...env,
      });
      results.set(
        key,
        child.exited.then(({ code }) => ({ code, stderr: child.stderr() })),
      );
    }
  });
  after(async () => {
    await Promise.allSettled(results.values());
    await rm(dataDir, { recursive: true, force: true });
  });

  for (const [key, env] of cases) {
    it(`${Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}: exit 2, stderr names ${key}`, async () => {
      const { code, stderr } = await (results.get(key) as Promise<{ code: number | null; stderr: string }>);
      assert.equal(code, 2, stderr);
      assert.match(stderr, new RegExp(`\\b${key}\\b`));
      assert.doesNotMatch(stderr, /\n\s+at /, 'a message, not a stack trace');
    });
  }
});

for (const workers of [1, 2]) {
  describe(`the server process with WORKERS=${workers}`, () => {
    let dataDir: string;
    let child: Child | undefined;

    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'postern-lifecycle-'));
      await writeFile(join(dataDir, 'passwd'), `alice:{PLAIN}${PASSWORD}\nbob:{PLAIN}${PASSWORD}-bob\n`, { mode: 0o600 });
    });
    after(async () => {
      if (child && child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    });

    it('one session per maildrop across the POP3 processes, then SIGTERM: sessions are served until DRAIN_TIMEOUT_MS, then get -ERR [SYS/TEMP]; pending DELEs are not committed; exit 0', { timeout: 60_000 }, async () => {
      const started = await startServerProcess(dataDir, { WORKERS: String(workers), DRAIN_TIMEOUT_MS: '1500' });
      child = started.child;
      const { pop3Port, lmtpPort } = started;
      const proc = child;
      // The startup line names the ports the system chose for port 0 (POP3 of workers: as configured).
      const startup = await proc.until(() => proc.stderr().split('\n').find((l) => l.startsWith('postern: POP3 on')));
      assert.match(startup, new RegExp(`LMTP on 127\\.0\\.0\\.1:${lmtpPort}\\b`));
      assert.match(startup, workers === 1 ? new RegExp(`^postern: POP3 on 127\\.0\\.0\\.1:${pop3Port}, POP3S on 127\\.0\\.0\\.1:[1-9]`) : /^postern: POP3 on 127\.0\.0\.1:0,/);
      await deliverAll(lmtpPort, ['alice'], [simpleMessage('keep-me'), simpleMessage('keep-me-too')]);
      const maildir = join(dataDir, 'mail', 'alice', 'Maildir');
      const onDisk = await uidsOnDisk(maildir);
      assert.equal(onDisk.length, 2);

      // The maildrop lock holds across processes: whichever process a second connection lands
      // on, its login is refused while the first session is open.
      const holder = await Pop3Client.connect(pop3Port);
      await holder.login('alice', PASSWORD);
      const holderLogin = await proc.until((rs) => rs.find((r) => r.msg === 'login' && r.port === holder.localPort));
      const refusedOn = new Set<unknown>();
      for (let i = 0; i < 2 * workers; i++) {
        const other = await Pop3Client.connect(pop3Port);
        await other.command('USER alice');
        assert.match(await other.command(`PASS ${PASSWORD}`), /^-ERR \[IN-USE\] /);
        const failed = await proc.until((rs) => rs.find((r) => r.msg === 'login failed' && r.port === other.localPort));
        refusedOn.add(failed.worker);
        await other.quit();
      }
      if (workers > 1) {
        assert.ok(
          [...refusedOn].some((w) => w !== holderLogin.worker),
          `a refused login ran in another process than the holder (${String(holderLogin.worker)})`,
        );
      }
      assert.match(await holder.command('DELE 1'), /^\+OK /);
      assert.match(await holder.command('RSET'), /^\+OK /);
      assert.match(await holder.quit(), /^\+OK /);
      // Released at QUIT: the next login, in whichever process, works.
      const session = await Pop3Client.connect(pop3Port);
      await session.login('alice', PASSWORD);
      assert.match(await session.command('DELE 1'), /^\+OK /);
      // A connection that has not logged in is ended the same way.
      const idle = await Pop3Client.connect(pop3Port);

      const draining = proc.until((rs) => rs.find(isMsg('draining')));
      proc.process.kill('SIGTERM');
      await draining;

      if (workers === 1) {
        // One process: the listener is closed before the drain starts. A new connection is
        // refused, or (on some network stacks, when the SYN raced the close) reset; it is never served.
        const outcome = await new Promise<{ end: string; data: string }>((resolve) => {
          const s = connect({ host: '127.0.0.1', port: pop3Port });
          let data = '';
          let end = 'closed';
          s.on('data', (d: Buffer) => (data += d.toString('latin1')));
          s.on('error', (e: NodeJS.ErrnoException) => (end = e.code ?? e.message));
          s.on('close', () => resolve({ end, data }));
        });
        assert.equal(outcome.data, '', 'a connection made during the drain got no greeting');
        assert.match(outcome.end, /^(ECONNREFUSED|ECONNRESET|closed)$/);
      }

      // The open session is still served during the drain...
      assert.equal(await session.command('NOOP'), '+OK');
      assert.match(await session.command('STAT'), /^\+OK 1 \d+$/);
      // ...and then ended without committing.
      assert.equal(await session.line(), '-ERR [SYS/TEMP] Server shutting down, try again.');
      await session.closed;
      assert.equal(await idle.line(), '-ERR [SYS/TEMP] Server shutting down, try again.');
      await idle.closed;

      const { code, signal } = await proc.exited;
      assert.equal(signal, null);
      assert.equal(code, 0, proc.stderr());
      assert.deepEqual(await uidsOnDisk(maildir), onDisk, 'the DELE was not committed');
      assert.ok(proc.logs.some((l) => l.includes('"result":"shutdown"')), 'the session end says why');
      assertNoSecretsInLogs([...proc.logs, proc.stderr()], [PASSWORD, `${PASSWORD}-bob`]);
    });
  });
}

describe('SIGHUP', () => {
  it('reloads the log level from CONFIG_FILE, and refuses a configuration that no longer validates', { timeout: 60_000 }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'postern-sighup-'));
    const tls = await sharedTls();
    const file = join(dataDir, 'postern.yaml');
    await writeFile(file, 'log_level: info\n');
    const child = startMain({
      CONFIG_FILE: file,
      WORKERS: '1',
      DATA_DIR: dataDir,
      POP3_LISTEN: '127.0.0.1:0',
      POP3S_LISTEN: 'off',
      LMTP_LISTEN: 'off',
      ADMIN_LISTEN: 'off',
      TLS_CERT: tls.cert,
      TLS_KEY: tls.key,
    });
    try {
      const port = await child.until((rs) => (rs.find(isMsg('POP3 listening'))?.pop3 as { port: number } | undefined)?.port);
      await writeFile(file, 'log_level: debug\n');
      child.process.kill('SIGHUP');
      const reloaded = await child.until((rs) => rs.find(isMsg('configuration reloaded')));
      assert.equal(reloaded.logLevel, 'debug');
      await writeFile(file, 'log_level: loud\n');
      child.process.kill('SIGHUP');
      const refused = await child.until((rs) => rs.find(isMsg('configuration reload refused; keeping the running configuration')));
      assert.match(String(refused.err), /LOG_LEVEL/);
      // Still serving.
      const c = await Pop3Client.connect(port);
      await c.quit();
    } finally {
      child.process.kill('SIGTERM');
      await child.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('WORKERS=auto', () => {
  it('is one process per CPU but one, at least one and at most four; a number is taken as given', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 8, 64].map((cpus) => workerCount('auto', cpus)),
      [1, 1, 2, 3, 4, 4, 4],
    );
    assert.equal(workerCount(2, 1), 2);
  });
});

// The local stack: one Redis (append-only) and one S3 server (versitygw, POSIX backend) as
// detached plain processes on 127.0.0.1, data under $STACK_DIR/stack/ (default var/).
//
//   npm run stack:up     start what is not running; writes var/stack.env and var/stack.pids
//   npm run stack:down   stop exactly the processes named in var/stack.pids
//
// Use the servers from a shell with: set -a; . var/stack.env; set +a
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import {
  createBucket,
  findProgram,
  findVersitygw,
  freePort,
  pollUntil,
  redisCommand,
  redisServerArgs,
  s3Env,
  versitygwArgs,
  versitygwEnv,
  waitForPort,
  type S3Connection,
} from '@postern/testkit';

const root = new URL('../..', import.meta.url).pathname;
const varDir = resolve(process.env.STACK_DIR ?? join(root, 'var'));
const dataDir = join(varDir, 'stack');
const envFile = join(varDir, 'stack.env');
const pidFile = join(varDir, 'stack.pids');

interface Entry {
  readonly name: string;
  readonly pid: number;
}

/** The PID's /proc/<pid>/cmdline, '' when it is gone (or a zombie). */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Still our program: its name is in the command line (redis-server rewrites its title but keeps the name). */
function runs(entry: Entry): boolean {
  return cmdline(entry.pid).includes(entry.name);
}

function readPids(): Entry[] {
  if (!existsSync(pidFile)) return [];
  return readFileSync(pidFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [name, pid] = l.trim().split(/\s+/);
      if (!name || !/^\d+$/.test(pid ?? '')) throw new Error(`${pidFile}: malformed line ${JSON.stringify(l)}`);
      return { name, pid: Number(pid) };
    });
}

function readEnv(): Map<string, string> {
  const env = new Map<string, string>();
  if (!existsSync(envFile)) return env;
  for (const line of readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env.set(m[1]!, m[2]!);
  }
  return env;
}

/** The port of a previous run (so URLs stay stable), when it is free again; otherwise a new one. */
async function portFrom(url: string | undefined): Promise<number> {
  const previous = url ? Number(new URL(url).port) : 0;
  if (previous > 0) {
    const free = await new Promise<boolean>((done) => {
      const s = createServer();
      s.once('error', () => done(false));
      s.listen(previous, '127.0.0.1', () => s.close(() => done(true)));
    });
    if (free) return previous;
  }
  return freePort();
}

/** Starts `program` detached (it outlives this command), output appended to a log file. */
async function launch(name: string, program: string, args: string[], port: number, env: Record<string, string> = {}): Promise<Entry> {
  const log = openSync(join(dataDir, `${name}.log`), 'a');
  const child = spawn(program, args, { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...env }, cwd: dataDir });
  let died: string | null = null;
  child.once('exit', (code, signal) => (died = `${name} exited (code ${code}, signal ${signal}); see ${join(dataDir, `${name}.log`)}`));
  child.once('error', (e) => (died = `${name} failed to start: ${e.message}`));
  await waitForPort(port, 30_000, () => died);
  child.unref();
  return { name, pid: child.pid! };
}

function programsPresent(): boolean {
  try {
    findProgram('redis-server', 'redis-server');
    findVersitygw();
    return true;
  } catch {
    return false;
  }
}

async function stopEntries(entries: readonly Entry[]): Promise<void> {
  for (const entry of entries) {
    if (!runs(entry)) {
      const now = cmdline(entry.pid);
      console.log(`${entry.name} (pid ${entry.pid}) is not running${now ? `; pid ${entry.pid} is now ${JSON.stringify(now)}, not signalled` : ''}`);
      continue;
    }
    process.kill(entry.pid, 'SIGTERM');
    try {
      await pollUntil(`${entry.name} (pid ${entry.pid}) exits`, 10_000, async () => (runs(entry) ? undefined : true));
    } catch {
      if (runs(entry)) process.kill(entry.pid, 'SIGKILL');
    }
    console.log(`stopped ${entry.name} (pid ${entry.pid})`);
  }
}

async function up(): Promise<void> {
  const running = readPids();
  if (running.length > 0 && running.every(runs)) {
    console.log(`stack already running (${running.map((e) => `${e.name} pid ${e.pid}`).join(', ')}); env in ${envFile}`);
    return;
  }
  // Half a stack (one died): stop what is left and start both again on the same data.
  await stopEntries(running.filter(runs));
  if (!programsPresent()) {
    const r = spawnSync('bash', [join(root, 'infra/bin/install-test-deps.sh')], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('infra/bin/install-test-deps.sh failed');
  }
  const redisDir = join(dataDir, 'redis');
  const s3Dir = join(dataDir, 's3');
  mkdirSync(redisDir, { recursive: true });
  mkdirSync(s3Dir, { recursive: true });

  const previous = readEnv();
  const redisPort = await portFrom(previous.get('REDIS_URL'));
  const s3Port = await portFrom(previous.get('S3_ENDPOINT'));
  const conn: S3Connection = {
    endpoint: `http://127.0.0.1:${s3Port}`,
    region: 'us-east-1',
    bucket: previous.get('S3_BUCKET') ?? 'postern',
    accessKeyId: previous.get('AWS_ACCESS_KEY_ID') ?? `postern${randomBytes(6).toString('hex')}`,
    secretAccessKey: previous.get('AWS_SECRET_ACCESS_KEY') ?? randomBytes(24).toString('base64url'),
  };

  const entries: Entry[] = [];
  try {
    const redisProgram = findProgram('redis-server', 'redis-server');
    entries.push(await launch(basename(redisProgram), redisProgram, redisServerArgs(redisPort, redisDir, { appendonly: true }), redisPort));
    await pollUntil('redis answers PING', 30_000, async () => ((await redisCommand(redisPort, ['PING'])) === 'PONG' ? true : undefined));
    const vgw = findVersitygw();
    entries.push(await launch(basename(vgw), vgw, versitygwArgs(s3Port, s3Dir), s3Port, versitygwEnv(conn)));
    await createBucket(conn);
  } catch (e) {
    await stopEntries(entries);
    throw e;
  }

  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...s3Env(conn) };
  writeFileSync(envFile, Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 });
  writeFileSync(pidFile, entries.map((e) => `${e.name} ${e.pid}\n`).join(''));
  console.log(`stack up: Redis ${env.REDIS_URL}, S3 ${conn.endpoint} bucket ${conn.bucket}`);
  console.log(`data in ${dataDir}; use it with: set -a; . ${envFile}; set +a`);
}

async function down(): Promise<void> {
  const entries = readPids();
  if (entries.length === 0) {
    console.log(`stack not running (no ${pidFile})`);
    return;
  }
  await stopEntries(entries);
  rmSync(pidFile, { force: true });
}

const command = process.argv[2];
const actions: Record<string, () => Promise<void>> = { up, down };
const action = command ? actions[command] : undefined;
if (!action) {
  console.error('usage: stack.ts up|down   (STACK_DIR overrides the var directory)');
  process.exit(2);
}
action().catch((e: unknown) => {
  console.error(`stack ${command}: ${(e as Error).message}`);
  process.exit(1);
});

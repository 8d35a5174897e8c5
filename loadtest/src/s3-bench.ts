// The cluster benchmark: one gateway process on the S3 backend, against the S3 server's own raw
// GET throughput and against Dovecot, all in one run.
//
// It starts a private Redis and a private S3 server (versitygw), one gateway (`main.ts gateway`,
// WORKERS=1) and one delivery worker (`main.ts delivery`), generates test mail (mailgen.ts), loads
// it over LMTP through the delivery worker and writes the same messages as a Maildir tree for a
// private Dovecot. Then it measures:
//   1. full sessions (login, STAT, LIST, UIDL, RETR all, QUIT without deleting) on the gateway:
//      sessions/s, MB/s, latency, gateway CPU per session; the same workload on Dovecot;
//   2. RETR throughput through the gateway against raw GETs of the same objects with the same SDK
//      client (createS3Client / S3Objects: same keep-alive agent) at the same concurrency, one
//      pass over all mailboxes each, alternating;
//   3. Redis commands (server side, INFO commandstats deltas), Redis round trips (MONITOR lines
//      sent by clients, not from inside scripts; and the gateway's own count of Redis operations)
//      and S3 requests (the gateway's metrics) per empty poll and per full session.
// Nothing is tuned to the figures; every phase is bounded and the run stops by itself.
//
// Usage: npm run bench:s3 -w loadtest -- [options]

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createS3Client, parseObjectKey, parseS3Settings, S3Objects } from '@postern/s3-store';
import { freePort, ManagedProcess, redisCommand, startRedis, startS3, type RedisServer, type S3Server } from '@postern/testkit';
import { UsageError, intOption, isMain, numberOption, runCli } from './cli-util.js';
import { startDovecot } from './dovecot.js';
import { formatSessions, runSessions, type Account, type LatencySummary, type SessionResult } from './generator.js';
import { DEFAULT_SIZES, generateMail } from './mailgen.js';
import { median } from './overhead.js';
import { Pop3Client } from './pop3-client.js';
import { treeCpuSeconds } from './procstat.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const S3_MAX_SOCKETS = '256';
const S3_TIMEOUT_MS = '10000';

export interface S3BenchOptions {
  /** Users with mail. */
  users: number;
  /** Users without mail, for the empty polls. */
  emptyUsers: number;
  messages: number;
  sizes: string;
  seed: number;
  concurrency: number;
  /** Seconds of each timed session run. */
  durationSeconds: number;
  /** Gateway/Dovecot session runs, and gateway/raw-GET passes, alternating. */
  rounds: number;
  /** Sequential empty polls and full sessions for the per-session Redis and S3 counts. */
  polls: number;
  /** Run services/server/dist/main.js (after a build) instead of the sources through tsx. */
  built: boolean;
  /** versitygw keeps connections open (VGW_KEEP_ALIVE); off, it closes each after one response. */
  s3KeepAlive: boolean;
  /** Write a V8 CPU profile of the gateway into this directory (node --cpu-prof). */
  cpuProfDir: string | null;
  dovecot: boolean;
  log: (text: string) => void;
}

export interface Counts {
  /** Redis commands executed, INFO commandstats deltas (script-internal calls included). */
  redisCommands: number;
  redisByCommand: Record<string, number>;
  /** Commands clients sent (MONITOR lines not from a script): round trips unless pipelined. */
  redisClientCommands: number;
  /** Redis operations the gateway counted (postern_store_operation_duration_seconds, backend redis). */
  redisOperations: number;
  redisOperationsByName: Record<string, number>;
  /** S3 requests the gateway made (same metric, backend s3). */
  s3Requests: number;
  s3ByOperation: Record<string, number>;
}

export interface PerSession {
  sessions: number;
  failed: number;
  /** Totals over the sessions divided by their number. */
  perSession: Counts;
}

/** CPU seconds of each party over a phase. */
export interface CpuSplit {
  gateway: number;
  versitygw: number;
  /** This process: the POP3 clients, or the raw GET client. */
  client: number;
  wallSeconds: number;
}

export interface ThroughputPass {
  gatewayMBps: number;
  rawMBps: number;
  gatewayOctets: number;
  rawOctets: number;
  gatewayCpu: CpuSplit;
  rawCpu: CpuSplit;
}

export interface S3BenchResult {
  options: Omit<S3BenchOptions, 'log'>;
  data: { messages: number; crlfOctets: number; objects: number; objectOctets: number };
  gateway: SessionResult[];
  /** CPU of each party during each timed gateway run. */
  gatewayCpu: CpuSplit[];
  dovecot: SessionResult[];
  throughput: ThroughputPass[];
  emptyPoll: PerSession;
  fullSession: PerSession;
  /** S3 requests per session during the timed gateway runs. */
  s3RequestsPerTimedSession: number;
}

// ---------------------------------------------------------------------------------------------
// Counting

type Metrics = Map<string, number>;

/** S3 requests (the other operations of the s3 backend in the store metric are the gateway's own: open, read, commit). */
const S3_REQUESTS = new Set(['get', 'get-range', 'put', 'head', 'delete', 'list']);

/**
 * The gateway's count of its requests to its backends, by `backend/operation`: Redis round trips
 * and S3 requests, as timed by the cluster store (postern_backend_request_duration_seconds, or
 * postern_store_operation_duration_seconds where the store reports into that histogram).
 */
async function scrapeOperations(adminPort: number): Promise<Metrics> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  if (!res.ok) throw new Error(`gateway /metrics: HTTP ${res.status}`);
  const out: Metrics = new Map();
  for (const line of (await res.text()).split('\n')) {
    const store = line.startsWith('postern_store_operation_duration_seconds_count{');
    if (!store && !line.startsWith('postern_backend_request_duration_seconds_count{')) continue;
    const labels = line.slice(line.indexOf('{') + 1, line.lastIndexOf('}'));
    const backend = /backend="([^"]*)"/.exec(labels)?.[1] ?? '?';
    const operation = /operation="([^"]*)"/.exec(labels)?.[1] ?? '?';
    if (store && !(backend === 'redis' || (backend === 's3' && S3_REQUESTS.has(operation)))) continue;
    const key = `${backend}/${operation}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** `cmdstat_<name>:calls=N,...` from INFO commandstats. */
async function commandStats(redis: RedisServer): Promise<Metrics> {
  const text = String(await redisCommand(redis, ['INFO', 'commandstats']));
  const out: Metrics = new Map();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1] as string, Number(m[2]));
  return out;
}

function delta(after: Metrics, before: Metrics, keep: (key: string) => boolean): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d !== 0 && keep(k)) out[k] = d;
  }
  return out;
}

const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

/** Calls `onLine` with every CRLF-terminated line the socket receives (latin1). */
function readLines(socket: Socket, onLine: (line: string) => void): void {
  let buffer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    let i: number;
    while ((i = buffer.indexOf('\r\n')) !== -1) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      onLine(line);
    }
  });
}

/**
 * A MONITOR connection: counts commands sent by clients and commands run inside scripts
 * (`[0 lua]`). `settle()` sends a marker from another connection and resolves once MONITOR has
 * shown it, so every earlier command has been counted.
 */
class Monitor {
  client = 0;
  script = 0;
  readonly #socket: Socket;
  #marker: { text: string; resolve: () => void } | null = null;
  #ready: Promise<void>;

  constructor(private readonly redis: RedisServer) {
    this.#socket = connect({ host: redis.host, port: redis.port });
    let started: () => void;
    this.#ready = new Promise((resolve) => (started = resolve));
    readLines(this.#socket, (line) => (line === '+OK' ? started() : this.#line(line)));
    this.#socket.write('MONITOR\r\n');
  }

  #line(line: string): void {
    const m = /^\+[0-9.]+ \[\d+ ([^\]]+)\] "([^"]*)"(.*)$/.exec(line);
    if (m === null) return;
    const [, source, command, rest] = m as unknown as [string, string, string, string];
    if (this.#marker !== null && command.toLowerCase() === 'echo' && rest.includes(this.#marker.text)) {
      this.#marker.resolve();
      return;
    }
    const name = command.toLowerCase();
    if (name === 'info' || name === 'echo') return; // ours
    if (source === 'lua') this.script++;
    else this.client++;
  }

  started(): Promise<void> {
    return this.#ready;
  }

  async settle(): Promise<void> {
    const text = `s3-bench-marker-${process.hrtime.bigint()}`;
    const seen = new Promise<void>((resolve) => (this.#marker = { text, resolve }));
    await redisCommand(this.redis, ['ECHO', text]);
    await seen;
    this.#marker = null;
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Runs `work` (which reports how many sessions it ran and how many failed) and counts around it. */
async function counted(
  redis: RedisServer,
  adminPort: number,
  work: () => Promise<{ sessions: number; failed: number }>,
): Promise<PerSession> {
  const monitor = new Monitor(redis);
  try {
    await monitor.started();
    const ops0 = await scrapeOperations(adminPort);
    const cmd0 = await commandStats(redis);
    const client0 = monitor.client;
    const { sessions, failed } = await work();
    await monitor.settle();
    const clientCommands = monitor.client - client0;
    const cmd1 = await commandStats(redis);
    const ops1 = await scrapeOperations(adminPort);
    const ours = new Set(['info', 'echo', 'monitor']);
    const byCommand = delta(cmd1, cmd0, (k) => !ours.has(k));
    const redisOps = delta(ops1, ops0, (k) => k.startsWith('redis/'));
    const s3Ops = delta(ops1, ops0, (k) => k.startsWith('s3/'));
    const per = (r: Record<string, number>): Record<string, number> =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k.replace(/^(redis|s3)\//, ''), v / sessions]));
    return {
      sessions,
      failed,
      perSession: {
        redisCommands: sum(byCommand) / sessions,
        redisByCommand: per(byCommand),
        redisClientCommands: clientCommands / sessions,
        redisOperations: sum(redisOps) / sessions,
        redisOperationsByName: per(redisOps),
        s3Requests: sum(s3Ops) / sessions,
        s3ByOperation: per(s3Ops),
      },
    };
  } finally {
    monitor.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster

interface Cluster {
  redis: RedisServer;
  s3: S3Server;
  gateway: ManagedProcess;
  delivery: ManagedProcess;
  pop3Port: number;
  lmtpPort: number;
  adminPort: number;
  stop(): Promise<void>;
}

async function startRole(
  role: 'gateway' | 'delivery',
  env: Record<string, string>,
  port: number,
  o: Pick<S3BenchOptions, 'built' | 'cpuProfDir'>,
): Promise<ManagedProcess> {
  const node = o.built ? ['services/server/dist/main.js'] : ['--conditions=development', '--import', 'tsx', 'services/server/src/main.ts'];
  const prof = role === 'gateway' && o.cpuProfDir !== null ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] : [];
  const proc = ManagedProcess.create({ name: role, program: process.execPath, args: [...prof, ...node, role], env, cwd: ROOT, port, readyTimeoutMs: 60_000 });
  try {
    await proc.start();
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return proc;
}

async function startCluster(dir: string, passwdFile: string, o: S3BenchOptions): Promise<Cluster> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const redis = await startRedis();
    stops.push(() => redis.stop());
    const s3 = await startS3({ bucket: 'postern-bench', keepAlive: o.s3KeepAlive });
    stops.push(() => s3.stop());
    const [pop3Port, lmtpPort, adminPort, deliveryAdmin] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const shared: Record<string, string> = {
      ...s3.env,
      REDIS_URL: redis.url,
      PASSWD_FILE: passwdFile,
      WORKERS: '1',
      PLAINTEXT_AUTH: 'always',
      LOG_LEVEL: 'warn',
      POP3S_LISTEN: 'off',
      MAX_CONNECTIONS_PER_IP: '100000',
      AUTH_THROTTLE_IP_FAILURES: '0',
      AUTH_THROTTLE_USER_FAILURES: '0',
      AUTH_FAILURE_DELAY_MS: '0',
      CREDENTIAL_CACHE_TTL_S: '300',
      SWEEP_INTERVAL_S: '0',
      S3_MAX_SOCKETS,
      S3_TIMEOUT_MS,
    };
    const gateway = await startRole(
      'gateway',
      { ...shared, DATA_DIR: join(dir, 'gateway'), POP3_LISTEN: `127.0.0.1:${pop3Port}`, LMTP_LISTEN: 'off', ADMIN_LISTEN: `127.0.0.1:${adminPort}` },
      pop3Port,
      o,
    );
    stops.push(() => gateway.stop(10_000));
    const delivery = await startRole(
      'delivery',
      { ...shared, DATA_DIR: join(dir, 'delivery'), POP3_LISTEN: 'off', LMTP_LISTEN: `127.0.0.1:${lmtpPort}`, ADMIN_LISTEN: `127.0.0.1:${deliveryAdmin}` },
      lmtpPort,
      o,
    );
    stops.push(() => delivery.stop(10_000));
    return { redis, s3, gateway, delivery, pop3Port, lmtpPort, adminPort, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Loading mail over LMTP

/** One LMTP connection that runs transactions one after another (one recipient each). */
class LmtpConnection {
  readonly #socket: Socket;
  #lines: string[] = [];
  #waiting: Array<{ resolve: (reply: string) => void; reject: (e: Error) => void }> = [];
  #error: Error | null = null;

  constructor(port: number) {
    this.#socket = connect({ host: '127.0.0.1', port });
    const fail = (e: Error): void => {
      this.#error ??= e;
      for (const w of this.#waiting.splice(0)) w.reject(e);
    };
    this.#socket.on('error', fail);
    this.#socket.on('close', () => fail(new Error('LMTP connection closed')));
    readLines(this.#socket, (line) => {
      this.#lines.push(line);
      if (line[3] === '-') return;
      const reply = this.#lines.join('\n');
      this.#lines = [];
      this.#waiting.shift()?.resolve(reply);
    });
  }

  #reply(): Promise<string> {
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  async #expect(code: string, line: string | Buffer | null): Promise<void> {
    const reply = this.#reply();
    if (line !== null) this.#socket.write(typeof line === 'string' ? `${line}\r\n` : line);
    const text = await reply;
    if (!text.startsWith(code)) throw new Error(`LMTP: expected ${code} after ${typeof line === 'string' ? line : 'data'}, got ${text}`);
  }

  async open(): Promise<void> {
    await this.#expect('220', null);
    await this.#expect('250', 'LHLO s3-bench.localhost');
  }

  /** Delivers `crlfMessage` (CRLF line ends) to `rcpt`. */
  async deliver(rcpt: string, crlfMessage: Buffer): Promise<void> {
    await this.#expect('250', 'MAIL FROM:<bench@example.com>');
    await this.#expect('250', `RCPT TO:<${rcpt}>`);
    await this.#expect('354', 'DATA');
    const text = crlfMessage.toString('latin1');
    const stuffed = (text.startsWith('.') ? '.' : '') + text.replaceAll('\r\n.', '\r\n..') + (text.endsWith('\r\n') ? '' : '\r\n');
    await this.#expect('250', Buffer.from(`${stuffed}.\r\n`, 'latin1'));
  }

  async close(): Promise<void> {
    await this.#expect('221', 'QUIT').catch(() => undefined);
    this.#socket.destroy();
  }
}

/** Delivers every message of the Maildir tree (`<root>/<user>/Maildir/new`) over `connections` LMTP connections. */
async function loadOverLmtp(port: number, root: string, users: string[], connections: number): Promise<{ messages: number; octets: number }> {
  const jobs: Array<{ user: string; file: string }> = [];
  for (const user of users) {
    const dir = join(root, user, 'Maildir', 'new');
    for (const name of readdirSync(dir).sort()) jobs.push({ user, file: join(dir, name) });
  }
  let next = 0;
  let octets = 0;
  const worker = async (): Promise<void> => {
    const lmtp = new LmtpConnection(port);
    try {
      await lmtp.open();
      while (next < jobs.length) {
        const job = jobs[next++] as { user: string; file: string };
        const crlf = Buffer.from(readFileSync(job.file, 'latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
        octets += crlf.length;
        await lmtp.deliver(`${job.user}@example.com`, crlf);
      }
    } finally {
      await lmtp.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(connections, jobs.length) }, worker));
  return { messages: jobs.length, octets };
}

// ---------------------------------------------------------------------------------------------
// Raw GETs

/** Every message object, by mailbox. */
async function listMailboxes(objects: S3Objects): Promise<string[][]> {
  const byMailbox = new Map<string, string[]>();
  for await (const page of objects.list('')) {
    for (const o of page) {
      const parsed = parseObjectKey('', o.key);
      if (parsed === null) continue;
      const list = byMailbox.get(parsed.mailboxId);
      if (list === undefined) byMailbox.set(parsed.mailboxId, [o.key]);
      else list.push(o.key);
    }
  }
  return [...byMailbox.values()];
}

/** One pass: `concurrency` workers, each GETs all objects of the next mailbox in turn, reading every body. */
async function rawGetPass(objects: S3Objects, mailboxes: string[][], concurrency: number): Promise<{ octets: number; seconds: number }> {
  let next = 0;
  let octets = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < mailboxes.length) {
      for (const key of mailboxes[next++] as string[]) {
        const { body } = await objects.get(key);
        for await (const chunk of body) octets += (chunk as Buffer).length;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { octets, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// The run

/** Measures the CPU of the gateway, versitygw and this process while `work` runs. */
async function withCpu<T>(c: Cluster, work: () => Promise<T>): Promise<[T, CpuSplit]> {
  const gatewayPid = c.gateway.pid as number;
  const s3Pid = c.s3.proc.pid as number;
  const g0 = treeCpuSeconds(gatewayPid);
  const s0 = treeCpuSeconds(s3Pid);
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await work();
  const self = process.cpuUsage(self0);
  return [
    result,
    {
      gateway: treeCpuSeconds(gatewayPid) - g0,
      versitygw: treeCpuSeconds(s3Pid) - s0,
      client: (self.user + self.system) / 1e6,
      wallSeconds: (performance.now() - t0) / 1000,
    },
  ];
}

function formatCpu(c: CpuSplit): string {
  const cores = (x: number): string => (x / c.wallSeconds).toFixed(2);
  return `cores busy: gateway ${cores(c.gateway)}, versitygw ${cores(c.versitygw)}, bench client ${cores(c.client)}`;
}

/** Sequential empty polls: login, STAT, QUIT on accounts without mail. */
async function emptyPolls(port: number, accounts: Account[], n: number): Promise<{ sessions: number; failed: number }> {
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const a = accounts[i % accounts.length] as Account;
    try {
      const client = await Pop3Client.connect({ host: '127.0.0.1', port });
      try {
        await client.login(a.user, a.password);
        const stat = await client.stat();
        if (stat.count !== 0) throw new Error(`${a.user} is not empty`);
        await client.quit();
      } finally {
        client.destroy();
      }
    } catch {
      failed++;
    }
  }
  return { sessions: n, failed };
}

export async function s3Bench(o: S3BenchOptions): Promise<S3BenchResult> {
  if (o.users < o.concurrency) throw new UsageError(`need at least --concurrency = ${o.concurrency} users with mail, have ${o.users}`);
  const scratch = mkdtempSync(join(os.tmpdir(), 'postern-s3-bench-'));
  chmodSync(scratch, 0o755); // Dovecot's unprivileged mail processes must reach the tree
  let cluster: Cluster | null = null;
  let stopDovecot: (() => Promise<void>) | null = null;
  try {
    const root = join(scratch, 'mail');
    o.log(`generating ${o.users} users x ${o.messages} messages (${o.sizes}) and ${o.emptyUsers} empty users\n`);
    const gen = generateMail({ root, users: o.users, messages: o.messages, sizes: o.sizes, seed: o.seed, lineEnds: 'lf' });
    const full: Account[] = gen.users.map((u) => ({ user: u.user, password: u.password }));
    const empty: Account[] = Array.from({ length: o.emptyUsers }, (_, i) => ({ user: `empty${i + 1}`, password: `secret${i + 1}` }));
    writeFileSync(gen.passwdFile, [...full, ...empty].map((a) => `${a.user}:{PLAIN}${a.password}\n`).join(''), { mode: 0o644 });
    for (const a of empty) mkdirSync(join(root, a.user, 'Maildir', 'new'), { recursive: true });

    o.log('starting Redis, versitygw, a gateway and a delivery worker\n');
    cluster = await startCluster(scratch, gen.passwdFile, o);
    const c = cluster;
    const gatewayPid = c.gateway.pid as number;
    const t0 = performance.now();
    const loaded = await loadOverLmtp(c.lmtpPort, root, full.map((a) => a.user), 8);
    o.log(`delivered ${loaded.messages} messages (${(loaded.octets / 1e6).toFixed(1)} MB) over LMTP in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

    // The gateway's client settings (services/server/src/backends.ts with S3_MAX_SOCKETS and S3_TIMEOUT_MS as set above).
    const settings = parseS3Settings({ ...c.s3.env, S3_MAX_SOCKETS, S3_CONNECT_TIMEOUT_MS: '3000', S3_REQUEST_TIMEOUT_MS: S3_TIMEOUT_MS });
    const rawClient = createS3Client(settings, { accessKeyId: c.s3.accessKeyId, secretAccessKey: c.s3.secretAccessKey });
    const objects = new S3Objects(rawClient, { bucket: c.s3.bucket });
    const mailboxes = await listMailboxes(objects);
    const objectCount = mailboxes.reduce((n, m) => n + m.length, 0);
    if (objectCount !== loaded.messages) throw new Error(`the bucket holds ${objectCount} message objects, ${loaded.messages} were delivered`);

    let dovecotPort = 0;
    let dovecotPid = 0;
    if (o.dovecot) {
      const workDir = join(scratch, 'dovecot');
      mkdirSync(workDir);
      const dc = await startDovecot({ mailRoot: root, passwdFile: gen.passwdFile, workDir });
      stopDovecot = dc.stop;
      dovecotPort = dc.port;
      dovecotPid = dc.pid;
    }

    const sessionOpts = (port: number) => ({ host: '127.0.0.1', port, accounts: full, concurrency: o.concurrency, list: true });
    o.log('warm-up: one session per account\n');
    const warm = [runSessions({ ...sessionOpts(c.pop3Port), sessions: full.length })];
    if (o.dovecot) warm.push(runSessions({ ...sessionOpts(dovecotPort), sessions: full.length }));
    for (const w of await Promise.all(warm)) {
      if (w.sessionsFailed > 0) throw new Error(`warm-up on ${w.target}: ${w.sessionsFailed} sessions failed: ${JSON.stringify(w.errors)}`);
    }

    const gateway: SessionResult[] = [];
    const gatewayCpu: CpuSplit[] = [];
    const dovecot: SessionResult[] = [];
    const throughput: ThroughputPass[] = [];
    let timedSessions = 0;
    let timedS3 = 0;
    for (let round = 0; round < o.rounds; round++) {
      if (o.dovecot) {
        o.log(`== round ${round + 1}/${o.rounds}: Dovecot, ${o.concurrency} concurrent sessions for ${o.durationSeconds} s\n`);
        const d = await runSessions({ ...sessionOpts(dovecotPort), durationMs: o.durationSeconds * 1000, serverPid: dovecotPid });
        o.log(formatSessions(d));
        dovecot.push(d);
      }
      o.log(`== round ${round + 1}/${o.rounds}: gateway, ${o.concurrency} concurrent sessions for ${o.durationSeconds} s\n`);
      const before = await scrapeOperations(c.adminPort);
      const [g, cpu] = await withCpu(c, () => runSessions({ ...sessionOpts(c.pop3Port), durationMs: o.durationSeconds * 1000, serverPid: gatewayPid }));
      timedS3 += sum(delta(await scrapeOperations(c.adminPort), before, (k) => k.startsWith('s3/')));
      timedSessions += g.sessionsOk + g.sessionsFailed;
      o.log(`${formatSessions(g)}  ${formatCpu(cpu)}\n`);
      gateway.push(g);
      gatewayCpu.push(cpu);

      o.log(`== round ${round + 1}/${o.rounds}: one pass over all ${full.length} mailboxes, ${o.concurrency} at a time: gateway RETR, then raw GET\n`);
      const [pass, passCpu] = await withCpu(c, () => runSessions({ ...sessionOpts(c.pop3Port), sessions: full.length }));
      if (pass.sessionsFailed > 0) throw new Error(`gateway pass: ${pass.sessionsFailed} sessions failed: ${JSON.stringify(pass.errors)}`);
      const [raw, rawCpu] = await withCpu(c, () => rawGetPass(objects, mailboxes, o.concurrency));
      const t: ThroughputPass = {
        gatewayMBps: pass.retrOctets / 1e6 / pass.elapsedSeconds,
        rawMBps: raw.octets / 1e6 / raw.seconds,
        gatewayOctets: pass.retrOctets,
        rawOctets: raw.octets,
        gatewayCpu: passCpu,
        rawCpu,
      };
      o.log(
        `gateway RETR ${t.gatewayMBps.toFixed(1)} MB/s (${(t.gatewayOctets / 1e6).toFixed(1)} MB; ${formatCpu(passCpu)})\n` +
          `raw GET      ${t.rawMBps.toFixed(1)} MB/s (${(t.rawOctets / 1e6).toFixed(1)} MB; ${formatCpu(rawCpu)})\n` +
          `ratio ${(t.gatewayMBps / t.rawMBps).toFixed(2)}\n`,
      );
      throughput.push(t);
    }
    rawClient.destroy();

    o.log(`== ${o.polls} sequential empty polls (login, STAT, QUIT), then ${o.polls} sequential full sessions\n`);
    const emptyPoll = await counted(c.redis, c.adminPort, () => emptyPolls(c.pop3Port, empty, o.polls));
    const fullSession = await counted(c.redis, c.adminPort, async () => {
      const r = await runSessions({ ...sessionOpts(c.pop3Port), concurrency: 1, sessions: o.polls });
      return { sessions: r.sessionsOk + r.sessionsFailed, failed: r.sessionsFailed };
    });

    const { log: _log, ...options } = o;
    return {
      options,
      data: { messages: loaded.messages, crlfOctets: loaded.octets, objects: objectCount, objectOctets: throughput[0]?.rawOctets ?? 0 },
      gateway,
      gatewayCpu,
      dovecot,
      throughput,
      emptyPoll,
      fullSession,
      s3RequestsPerTimedSession: timedS3 / timedSessions,
    };
  } finally {
    if (stopDovecot !== null) await stopDovecot().catch(() => undefined);
    if (cluster !== null) await cluster.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The report

const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

function cpuMsPerSession(r: SessionResult): number {
  return r.server === null || r.sessionsOk === 0 ? Number.NaN : (r.server.cpuSeconds * 1000) / r.sessionsOk;
}

function breakdown(r: Record<string, number>): string {
  const parts = Object.entries(r)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${fmt(v, 2)}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function countLines(title: string, p: PerSession): string {
  const c = p.perSession;
  return (
    `${title} (${p.sessions} sessions, ${p.failed} failed), per session:\n` +
    `  Redis commands (INFO commandstats):          ${fmt(c.redisCommands, 2)}  [${breakdown(c.redisByCommand)}]\n` +
    `  Redis round trips (MONITOR, client-sent):    ${fmt(c.redisClientCommands, 2)}\n` +
    `  Redis operations (gateway metrics):          ${fmt(c.redisOperations, 2)}  [${breakdown(c.redisOperationsByName)}]\n` +
    `  S3 requests (gateway metrics):               ${fmt(c.s3Requests, 2)}  [${breakdown(c.s3ByOperation)}]\n`
  );
}

export function formatS3Bench(r: S3BenchResult): string {
  const o = r.options;
  const med = (runs: SessionResult[], get: (s: SessionResult) => number): number => median(runs.map(get));
  const rows: Array<[string, (s: SessionResult) => number, number]> = [
    ['sessions/s', (s) => s.sessionsPerSecond, 1],
    ['RETR MB/s', (s) => s.megabytesPerSecond, 1],
    ['session p50 ms', (s) => s.sessionLatencyMs.p50, 1],
    ['session p99 ms', (s) => s.sessionLatencyMs.p99, 1],
    ['server CPU ms/session', cpuMsPerSession, 2],
    ['server cores busy', (s) => s.server?.cores ?? Number.NaN, 2],
    ['load generator cores', (s) => s.clientCores, 2],
    ['failed sessions', (s) => s.sessionsFailed, 0],
  ];
  const table = rows
    .map(([label, get, d]) => {
      const g = med(r.gateway, get);
      const dv = r.dovecot.length === 0 ? Number.NaN : med(r.dovecot, get);
      return `${label.padEnd(24)}${fmt(g, d).padStart(12)}${fmt(dv, d).padStart(12)}${fmt(g / dv, 2).padStart(16)}`;
    })
    .join('\n');
  const latency = (l: LatencySummary): string => `p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms`;
  const allGateway = r.gateway.map((g) => `${fmt(g.sessionsPerSecond, 1)}`).join(', ');
  const allDovecot = r.dovecot.map((g) => `${fmt(g.sessionsPerSecond, 1)}`).join(', ');
  const gw = median(r.throughput.map((t) => t.gatewayMBps));
  const raw = median(r.throughput.map((t) => t.rawMBps));
  const paired = median(r.throughput.map((t) => t.gatewayMBps / t.rawMBps));
  const empty = r.emptyPoll.perSession;
  const cpuPerMB = (get: (t: ThroughputPass) => number): string => fmt(median(r.throughput.map((t) => (get(t) * 1000) / (t.rawOctets / 1e6))), 1);
  const cores = (get: (c: CpuSplit) => number): string => fmt(median(r.gatewayCpu.map((c) => get(c) / c.wallSeconds)), 2);
  return (
    `\nData: ${o.users} users x ${o.messages} messages (${o.sizes}), ${r.data.messages} messages, ${fmt(r.data.crlfOctets / 1e6, 1)} MB; ` +
    `${o.emptyUsers} empty users; ${o.concurrency} concurrent sessions, ${o.rounds} rounds of ${o.durationSeconds} s; gateway from ${o.built ? 'dist' : 'sources (tsx)'}; ` +
    `versitygw keep-alive ${o.s3KeepAlive ? 'on' : 'off'}\n\n` +
    `1. Sessions (login, STAT, LIST, UIDL, RETR all, QUIT), medians of the rounds\n\n` +
    `${''.padEnd(24)}${'gateway'.padStart(12)}${'dovecot'.padStart(12)}${'gateway/dovecot'.padStart(16)}\n${table}\n\n` +
    `gateway sessions/s per round: ${allGateway}${r.dovecot.length > 0 ? `; dovecot: ${allDovecot}` : ''}\n` +
    `gateway session latency (round 1): ${latency(r.gateway[0]!.sessionLatencyMs)}; login ${latency(r.gateway[0]!.loginLatencyMs)}\n` +
    `during the gateway runs, cores busy: gateway ${cores((c) => c.gateway)}, versitygw ${cores((c) => c.versitygw)}, bench client ${cores((c) => c.client)}\n` +
    `S3 requests per timed gateway session: ${fmt(r.s3RequestsPerTimedSession, 2)}\n\n` +
    `2. RETR through the gateway vs raw S3 GET (same objects, ${o.concurrency} concurrent, one pass each, medians of ${r.throughput.length})\n\n` +
    `gateway RETR MB/s:       ${fmt(gw, 1)}   (per pass: ${r.throughput.map((t) => fmt(t.gatewayMBps, 1)).join(', ')})\n` +
    `raw GET MB/s:            ${fmt(raw, 1)}   (per pass: ${r.throughput.map((t) => fmt(t.rawMBps, 1)).join(', ')})\n` +
    `gateway/raw:             ${fmt(gw / raw, 2)}   (median of per-pass ratios ${fmt(paired, 2)}; target >= 0.8: ${paired >= 0.8 ? 'met' : 'MISSED'})\n` +
    `CPU ms per MB served:    gateway pass: gateway ${cpuPerMB((t) => t.gatewayCpu.gateway)}, versitygw ${cpuPerMB((t) => t.gatewayCpu.versitygw)}, ` +
    `bench client ${cpuPerMB((t) => t.gatewayCpu.client)}; raw pass: versitygw ${cpuPerMB((t) => t.rawCpu.versitygw)}, bench client ${cpuPerMB((t) => t.rawCpu.client)}\n\n` +
    `3. Redis and S3 per session (server-side counts)\n\n` +
    countLines('empty poll (login, STAT, QUIT)', r.emptyPoll) +
    countLines('full session (login, STAT, LIST, UIDL, RETR all, QUIT)', r.fullSession) +
    `target: an empty poll costs at most 2 Redis round trips and no S3 request: ` +
    `${empty.redisClientCommands <= 2 && empty.redisOperations <= 2 && empty.s3Requests === 0 ? 'met' : 'MISSED'}\n`
  );
}

export const USAGE = `Usage: npm run bench:s3 -w loadtest -- [options]
  --users N          users with mail (default 64)
  --empty-users N    users without mail, for the empty polls (default 8)
  --messages M       messages per user (default 20)
  --sizes SPEC       message sizes (default ${DEFAULT_SIZES})
  --seed N           data seed (default 1)
  --concurrency C    concurrent sessions and concurrent raw GET workers (default 16)
  --duration S       seconds of each timed session run (default 10)
  --rounds R         Dovecot/gateway runs and gateway/raw passes, alternating (default 3)
  --polls N          sequential empty polls and full sessions counted for Redis and S3 (default 200)
  --built            run services/server/dist/main.js (build first) instead of the sources via tsx
  --no-s3-keep-alive versitygw closes each connection after one response (its default)
  --cpu-prof DIR     write a V8 CPU profile of the gateway into DIR
  --no-dovecot       skip the Dovecot reference
  --json             print the result as JSON (progress goes to stderr)
`;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      users: { type: 'string' },
      'empty-users': { type: 'string' },
      messages: { type: 'string' },
      sizes: { type: 'string' },
      seed: { type: 'string' },
      concurrency: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      polls: { type: 'string' },
      built: { type: 'boolean' },
      'no-s3-keep-alive': { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      'no-dovecot': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (v.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const json = v.json === true;
  const result = await s3Bench({
    users: intOption('users', v.users, 64, 1),
    emptyUsers: intOption('empty-users', v['empty-users'], 8, 1),
    messages: intOption('messages', v.messages, 20, 1),
    sizes: v.sizes ?? DEFAULT_SIZES,
    seed: intOption('seed', v.seed, 1),
    concurrency: intOption('concurrency', v.concurrency, 16, 1),
    durationSeconds: numberOption('duration', v.duration, 10),
    rounds: intOption('rounds', v.rounds, 3, 1),
    polls: intOption('polls', v.polls, 200, 1),
    built: v.built === true,
    s3KeepAlive: v['no-s3-keep-alive'] !== true,
    cpuProfDir: v['cpu-prof'] === undefined ? null : resolve(process.env.INIT_CWD ?? process.cwd(), v['cpu-prof']),
    dovecot: v['no-dovecot'] !== true,
    log: (t) => (json ? process.stderr : process.stdout).write(t),
  });
  if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else process.stdout.write(formatS3Bench(result));
  return 0;
}

if (isMain(import.meta.url)) runCli(main, USAGE);

/**
 * Real Redis for tests: a single server, a cluster, or a sentinel group, each node a plain
 * `redis-server` / `redis-sentinel` process (Debian packages) on 127.0.0.1 with a private temp dir.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import { ManagedProcess, findProgram } from './process.js';

const run = promisify(execFile);

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface RedisOptions {
  /** Keep data across restarts (append-only file, fsync every second). Default false. */
  readonly appendonly?: boolean;
  /** Extra `redis-server` arguments, e.g. `['--maxmemory', '10mb']`. */
  readonly args?: readonly string[];
}

export interface RedisServer extends HostPort {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** The server's private directory (data, AOF). */
  readonly dir: string;
  /** stop/kill/restart/signal('SIGSTOP') by the server's own PID; restart keeps port and dir. */
  readonly proc: ManagedProcess;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** `redis-server` command-line arguments: loopback only, no RDB snapshots, logs to stdout. */
export function redisServerArgs(port: number, dir: string, options: RedisOptions = {}): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', options.appendonly ? 'yes' : 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--logfile', '',
    ...(options.args ?? []),
  ];
}

export function redisServerProgram(): string {
  return findProgram('redis-server', 'redis-server');
}

async function startNode(name: string, port: number, dir: string, options: RedisOptions): Promise<ManagedProcess> {
  await mkdir(dir, { recursive: true });
  return ManagedProcess.start({
    name,
    program: redisServerProgram(),
    args: redisServerArgs(port, dir, options),
    port,
    cwd: dir,
    // The port accepts while the AOF is still loading (replies LOADING); ready once PING answers.
    ready: async () => (await redisCommand(port, ['PING'])) === 'PONG',
  });
}

/** Starts one Redis server on a free port. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'postern-redis-'));
  const port = await freePort();
  let proc: ManagedProcess;
  try {
    proc = await startNode('redis-server', port, dir, options);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    proc,
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A minimal RESP client for the admin commands below (one connection per command, with a deadline).

export type RespValue = string | number | null | RespValue[];

export class RedisReplyError extends Error {
  readonly code = 'redis-reply-error';
}

/** Parses one RESP reply at `pos`; returns null when the buffer does not hold all of it yet. */
function parseReply(buf: Buffer, pos: number): { value: RespValue | Error; end: number } | null {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  switch (type) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new RedisReplyError(line), end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + len + 2) return null;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + len), end: eol + 2 + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: eol + 2 };
      const items: RespValue[] = [];
      let at = eol + 2;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at);
        if (!item) return null;
        if (item.value instanceof Error) return item;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      return { value: new RedisReplyError(`unexpected RESP type ${JSON.stringify(type)}`), end: buf.length };
  }
}

/** Sends one command to 127.0.0.1:port and returns the reply; error replies reject. */
export function redisCommand(node: HostPort | number, args: readonly string[], timeoutMs = 5_000): Promise<RespValue> {
  const { host, port } = typeof node === 'number' ? { host: '127.0.0.1', port: node } : node;
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, value?: RespValue) => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`redis ${host}:${port} ${args[0]}: no reply after ${timeoutMs} ms`)));
    socket.once('error', (e) => done(e));
    socket.once('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const reply = parseReply(buf, 0);
      if (!reply) return;
      if (reply.value instanceof Error) done(reply.value);
      else done(null, reply.value);
    });
  });
}

/**
 * Calls `check` until it returns a value (not undefined) or the deadline passes; errors thrown by
 * `check` count as "not yet". For external conditions only (a server converging), never as a sleep.
 */
export async function pollUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  let delay = 20;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached after ${timeoutMs} ms${last ? ` (last error: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}

/** `INFO`-style `key:value` lines as a map. */
function fields(text: RespValue): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of String(text).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) map.set(line.slice(0, i), line.slice(i + 1));
  }
  return map;
}

/** A temp dir shared by several processes; stop() ends them all and removes it. */
async function processGroup(prefix: string): Promise<{ dir: string; procs: ManagedProcess[]; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const procs: ManagedProcess[] = [];
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  return { dir, procs, stop };
}

// ---------------------------------------------------------------------------------------------
// Cluster

export interface RedisClusterOptions {
  readonly masters?: number;
  readonly readyTimeoutMs?: number;
}

export interface RedisCluster {
  readonly nodes: HostPort[];
  readonly procs: ManagedProcess[];
  readonly dir: string;
  stop(): Promise<void>;
}

/** Starts N cluster-enabled masters, joins them with `redis-cli --cluster create`, waits for `cluster_state:ok`. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const cli = findProgram('redis-cli', 'redis-tools');
  const { dir, procs, stop } = await processGroup('postern-redis-cluster-');
  try {
    const nodes: HostPort[] = [];
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const busPort = await freePort();
      nodes.push({ host: '127.0.0.1', port });
      procs.push(
        await startNode(`redis-cluster-${i}`, port, join(dir, String(port)), {
          args: [
            '--cluster-enabled', 'yes',
            '--cluster-port', String(busPort),
            '--cluster-config-file', 'nodes.conf',
            '--cluster-node-timeout', '2000',
          ],
        }),
      );
    }
    await run(cli, ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 60_000,
    });
    await pollUntil('redis cluster_state:ok on every node', options.readyTimeoutMs ?? 30_000, async () => {
      for (const node of nodes) {
        const info = fields(await redisCommand(node, ['CLUSTER', 'INFO']));
        if (info.get('cluster_state') !== 'ok' || info.get('cluster_known_nodes') !== String(masters)) return undefined;
      }
      return true;
    });
    return { nodes, procs, dir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Sentinel

export interface RedisSentinelOptions {
  readonly replicas?: number;
  readonly sentinels?: number;
  readonly masterName?: string;
  readonly readyTimeoutMs?: number;
}

export interface RedisSentinelGroup {
  readonly masterName: string;
  readonly sentinels: HostPort[];
  /** The data nodes as started (after a failover the roles differ; ask the sentinels). */
  readonly master: RedisServer;
  readonly replicas: RedisServer[];
  readonly sentinelProcs: ManagedProcess[];
  /** The master address the sentinels currently report (asks the first that answers). */
  currentMaster(): Promise<HostPort>;
  /** Forces a failover; resolves with the new master once every sentinel reports it and it answers ROLE as master. */
  failover(timeoutMs?: number): Promise<HostPort>;
  stop(): Promise<void>;
}

function asHostPort(reply: RespValue): HostPort {
  if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected master address reply ${JSON.stringify(reply)}`);
  return { host: String(reply[0]), port: Number(reply[1]) };
}

/** Array of flat `[k, v, k, v]` replies (SENTINEL REPLICAS/SENTINELS) as maps. */
function records(reply: RespValue): Map<string, string>[] {
  if (!Array.isArray(reply)) return [];
  return reply.map((r) => {
    const map = new Map<string, string>();
    const flat = Array.isArray(r) ? r : [];
    for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), String(flat[i + 1]));
    return map;
  });
}

async function isMaster(node: HostPort): Promise<boolean> {
  const role = await redisCommand(node, ['ROLE']);
  return Array.isArray(role) && role[0] === 'master';
}

/** One master, replica(s) and sentinels (quorum = majority, down-after 1 s); waits until they all see each other. */
export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelGroup> {
  const replicaCount = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const masterName = options.masterName ?? 'postern';
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const sentinelProgram = findProgram('redis-sentinel', 'redis-sentinel');
  const { dir, procs, stop } = await processGroup('postern-redis-sentinel-');
  const server = async (name: string, args: readonly string[]): Promise<RedisServer> => {
    const port = await freePort();
    const nodeDir = join(dir, String(port));
    const proc = await startNode(name, port, nodeDir, { args });
    procs.push(proc);
    return { host: '127.0.0.1', port, url: `redis://127.0.0.1:${port}`, dir: nodeDir, proc, stop: () => proc.stop() };
  };
  try {
    const master = await server('redis-master', []);
    const replicas: RedisServer[] = [];
    for (let i = 0; i < replicaCount; i++) {
      replicas.push(await server(`redis-replica-${i}`, ['--replicaof', master.host, String(master.port)]));
    }
    const sentinels: HostPort[] = [];
    const sentinelProcs: ManagedProcess[] = [];
    const quorum = Math.floor(sentinelCount / 2) + 1;
    for (let i = 0; i < sentinelCount; i++) {
      const port = await freePort();
      const sdir = join(dir, `sentinel-${port}`);
      await mkdir(sdir, { recursive: true });
      const conf = join(sdir, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          'daemonize no',
          'logfile ""',
          `dir ${sdir}`,
          `sentinel monitor ${masterName} ${master.host} ${master.port} ${quorum}`,
          `sentinel down-after-milliseconds ${masterName} 1000`,
          `sentinel failover-timeout ${masterName} 5000`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      );
      const proc = await ManagedProcess.start({ name: `redis-sentinel-${i}`, program: sentinelProgram, args: [conf], port, cwd: sdir });
      procs.push(proc);
      sentinelProcs.push(proc);
      sentinels.push({ host: '127.0.0.1', port });
    }
    // Ready when every sentinel knows the other sentinels and sees every replica linked to the master.
    await pollUntil('sentinels see each other and the replicas', readyTimeoutMs, async () => {
      for (const s of sentinels) {
        const others = records(await redisCommand(s, ['SENTINEL', 'SENTINELS', masterName]));
        if (others.length !== sentinelCount - 1) return undefined;
        const reps = records(await redisCommand(s, ['SENTINEL', 'REPLICAS', masterName]));
        const linked = reps.filter((r) => r.get('flags') === 'slave' && r.get('master-link-status') === 'ok');
        if (linked.length !== replicaCount) return undefined;
      }
      return true;
    });

    const currentMaster = async (): Promise<HostPort> => {
      let last: unknown;
      for (const s of sentinels) {
        try {
          return asHostPort(await redisCommand(s, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName]));
        } catch (e) {
          last = e;
        }
      }
      throw new Error(`no sentinel answered for ${masterName}`, { cause: last });
    };

    const failover = async (timeoutMs = 30_000): Promise<HostPort> => {
      const before = await currentMaster();
      const same = (a: HostPort) => a.host === before.host && a.port === before.port;
      // A replica only becomes eligible once sentinel has fresh INFO from it; retry NOGOODSLAVE/INPROG.
      await pollUntil(`SENTINEL FAILOVER ${masterName}`, timeoutMs, async () => {
        await redisCommand(sentinels[0]!, ['SENTINEL', 'FAILOVER', masterName]);
        return true;
      });
      return pollUntil(`every sentinel reports a new master for ${masterName}`, timeoutMs, async () => {
        const seen = await Promise.all(
          sentinels.map(async (s) => asHostPort(await redisCommand(s, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName]))),
        );
        const next = seen[0]!;
        if (same(next) || seen.some((a) => a.host !== next.host || a.port !== next.port)) return undefined;
        return (await isMaster(next)) ? next : undefined;
      });
    };

    return { masterName, sentinels, master, replicas, sentinelProcs, currentMaster, failover, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

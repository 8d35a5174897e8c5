/**
 * The Redis side: a client for standalone, Sentinel or Cluster, and `RedisIndex`, the only code
 * that talks to it. Each `RedisIndex` method is one round trip (one script or one command), counted
 * in `RoundTrips` and timed through an optional `OperationTimer`.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { StoreError, type MessageMeta, type Quota } from '@postern/mailstore';
import { SCRIPTS, type ScriptName } from './scripts.js';
import type { RedisSettings } from './settings.js';

export type RedisClient = Redis | Cluster;

/** Anything with a prom-client Histogram's `observe` (e.g. telemetry `Metrics.backendDuration`). */
export interface OperationTimer {
  observe(labels: { backend: string; operation: string; result: string }, seconds: number): void;
}

/** Redis round trips made through one `RedisIndex`, in total and by operation. */
export class RoundTrips {
  total = 0;
  readonly byOperation = new Map<string, number>();

  add(operation: string): void {
    this.total++;
    this.byOperation.set(operation, (this.byOperation.get(operation) ?? 0) + 1);
  }

  /** A copy, for a before/after difference. */
  snapshot(): { total: number; byOperation: Record<string, number> } {
    return { total: this.total, byOperation: Object.fromEntries(this.byOperation) };
  }
}

function reconnectOnReadonly(error: Error): boolean | 2 {
  // After a Sentinel failover the old master turns replica: reconnect (to the new master) and resend.
  return error.message.startsWith('READONLY') ? 2 : false;
}

/**
 * An ioredis client for the configured mode. Commands time out after `commandTimeoutMs` and are
 * retried at most twice across reconnects, so a Redis outage fails a session quickly
 * ([SYS/TEMP]) instead of hanging it. Every script is idempotent, so a resend is safe.
 * `onError` sees connection errors (for a log line; rate-limit it, ioredis retries often).
 */
export function createRedis(settings: RedisSettings, onError: (error: Error) => void = () => {}): RedisClient {
  const client = makeClient(settings);
  // Connection errors also fail the commands waiting on them; this only keeps ioredis from
  // printing each reconnect attempt itself.
  client.on('error', onError);
  return client;
}

function makeClient(settings: RedisSettings): RedisClient {
  const common: RedisOptions = {
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(settings.password !== undefined ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: {} } : {}),
    commandTimeout: settings.commandTimeoutMs,
    maxRetriesPerRequest: 2,
    reconnectOnError: reconnectOnReadonly,
    connectionName: 'postern',
  };
  if (settings.mode === 'cluster') {
    return new Cluster(
      settings.nodes.map((n) => ({ host: n.host, port: n.port })),
      { redisOptions: common, scaleReads: 'master', slotsRefreshTimeout: 2_000, enableOfflineQueue: true },
    );
  }
  if (settings.mode === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: settings.sentinels.map((n) => ({ host: n.host, port: n.port })),
      name: settings.masterName,
      db: settings.db,
      ...(settings.sentinelPassword !== undefined ? { sentinelPassword: settings.sentinelPassword } : {}),
      ...(settings.tls ? { enableTLSForSentinelMode: true } : {}),
      failoverDetector: true,
    });
  }
  return new Redis(settings.url, { ...common, db: settings.db });
}

/** The keys of one mailbox; all share the hash tag `{m:<id>}`. */
export interface MailboxKeys {
  readonly idx: string;
  readonly tot: string;
  readonly lock: string;
  readonly pending: string;
  readonly done: string;
  readonly login: string;
}

export interface RedisIndexOptions {
  /** Key prefix (REDIS_KEY_PREFIX), default `postern:`. */
  readonly keyPrefix?: string;
  readonly timer?: OperationTimer;
  /** Shared counter (the lock manager and the store count into the same one). */
  readonly roundTrips?: RoundTrips;
  /**
   * How long the caller waits for a state-changing script (the Redis command timeout), ms: a
   * script that reaches Redis later (resent after a reconnect) changes nothing. 0: no deadline.
   */
  readonly lateAfterMs?: number;
  /** How long a commit's outcome stays answerable to a retry, ms. */
  readonly commitMemoryMs?: number;
}

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>;

const PENDING_SUFFIX = '}:pending';

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Sorted listing from a flat HGETALL reply (`id, size, id, size, ...`). */
function toListing(flat: readonly string[]): MessageMeta[] {
  const out: MessageMeta[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ uid: flat[i] as string, size: Number(flat[i + 1]) });
  out.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  return out;
}

export type CommitOutcome = 'applied' | 'already-applied' | 'lock-lost';

/** Index, lock and pending-deletion operations on one Redis (standalone, Sentinel or Cluster). */
export class RedisIndex {
  readonly client: RedisClient;
  readonly keyPrefix: string;
  readonly roundTrips: RoundTrips;
  readonly #timer: OperationTimer | undefined;
  readonly #commitMemoryMs: number;
  readonly #lateAfterMs: number;

  constructor(client: RedisClient, options: RedisIndexOptions = {}) {
    this.client = client;
    this.keyPrefix = options.keyPrefix ?? 'postern:';
    this.roundTrips = options.roundTrips ?? new RoundTrips();
    this.#timer = options.timer;
    this.#commitMemoryMs = options.commitMemoryMs ?? 10 * 60_000;
    this.#lateAfterMs = options.lateAfterMs ?? 0;
    for (const [name, script] of Object.entries(SCRIPTS)) {
      // defineCommand is idempotent per client; two RedisIndex on one client share the scripts.
      if (typeof (client as unknown as Record<string, unknown>)[name] !== 'function') client.defineCommand(name, script);
    }
  }

  keys(mailboxId: string): MailboxKeys {
    const base = `${this.keyPrefix}{m:${mailboxId}}`;
    return {
      idx: `${base}:idx`,
      tot: `${base}:tot`,
      lock: `${base}:lock`,
      pending: `${base}:pending`,
      done: `${base}:done`,
      login: `${base}:login`,
    };
  }

  /** One round trip, counted and timed; Redis failures become temporary `backend` StoreErrors. */
  async #run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    this.roundTrips.add(operation);
    const start = process.hrtime.bigint();
    let result = 'ok';
    try {
      return await fn();
    } catch (error) {
      result = 'error';
      throw new StoreError('backend', `redis ${operation} failed: ${(error as Error).message}`, { cause: error, temporary: true });
    } finally {
      this.#timer?.observe({ backend: 'redis', operation, result }, Number(process.hrtime.bigint() - start) / 1e9);
    }
  }

  #script(name: ScriptName): ScriptFn {
    const fn = (this.client as unknown as Record<string, ScriptFn>)[name] as ScriptFn;
    return fn.bind(this.client);
  }

  /** Take the lock and read the listing in one round trip; null when someone else holds it. */
  async acquire(mailboxId: string, token: string, ttlMs: number): Promise<{ fence: number; messages: MessageMeta[] } | null> {
    const k = this.keys(mailboxId);
    const deadline = this.#deadline();
    const reply = (await this.#run('acquire', () => this.#script('posternAcquire')(k.lock, k.tot, k.idx, token, ttlMs, deadline))) as
      | [number, string[]]
      | -1
      | null;
    if (reply === -1) throw late('acquire');
    if (reply === null) return null;
    return { fence: Number(reply[0]), messages: toListing(reply[1]) };
  }

  /** Unix ms after which a state-changing script must not apply (0: never). */
  #deadline(): number {
    return this.#lateAfterMs > 0 ? Date.now() + this.#lateAfterMs : 0;
  }

  async renew(mailboxId: string, token: string, ttlMs: number): Promise<boolean> {
    const k = this.keys(mailboxId);
    return (await this.#run('renew', () => this.#script('posternRenew')(k.lock, token, ttlMs))) === 1;
  }

  async release(mailboxId: string, token: string): Promise<boolean> {
    const k = this.keys(mailboxId);
    return (await this.#run('release', () => this.#script('posternRelease')(k.lock, token))) === 1;
  }

  /** The listing, read without the lock (a lease from another lock manager, operators). */
  async listing(mailboxId: string): Promise<MessageMeta[]> {
    const k = this.keys(mailboxId);
    return toListing(await this.#run('listing', () => this.client.hgetall(k.idx).then((h) => Object.entries(h).flat())));
  }

  /**
   * Move `ids` to the pending set and release the lock, if `token` and `fence` still hold it.
   * An empty token commits without lock checks (and leaves the lock alone).
   */
  async commit(mailboxId: string, token: string, fence: number, ids: readonly string[]): Promise<CommitOutcome> {
    const k = this.keys(mailboxId);
    const deadline = this.#deadline();
    const reply = await this.#run('commit', () =>
      this.#script('posternCommit')(k.lock, k.tot, k.idx, k.pending, k.done, token, fence, this.#commitMemoryMs, deadline, ...ids),
    );
    if (reply === -1) throw late('commit');
    return reply === 1 ? 'applied' : reply === 2 ? 'already-applied' : 'lock-lost';
  }

  /** Index a stored object; false when the quota does not allow it (nothing changed). */
  async index(mailboxId: string, id: string, size: number, quota: Quota | undefined): Promise<boolean> {
    const k = this.keys(mailboxId);
    const deadline = this.#deadline();
    const reply = await this.#run('index', () =>
      this.#script('posternIndex')(k.idx, k.tot, id, size, quota?.maxOctets ?? 0, quota?.maxMessages ?? 0, deadline),
    );
    if (reply === -1) throw late('index');
    return reply === 1;
  }

  async totals(mailboxId: string): Promise<{ count: number; octets: number }> {
    const k = this.keys(mailboxId);
    const [count, octets] = await this.#run('totals', () => this.client.hmget(k.tot, 'count', 'octets'));
    return { count: Number(count ?? 0), octets: Number(octets ?? 0) };
  }

  /** LOGIN-DELAY: true (and recorded) when the last login was `delayMs` or more ago. */
  async admitLogin(mailboxId: string, delayMs: number): Promise<boolean> {
    if (delayMs <= 0) return true;
    const k = this.keys(mailboxId);
    return (await this.#run('login-delay', () => this.client.set(k.login, '1', 'PX', delayMs, 'NX'))) === 'OK';
  }

  /**
   * A cluster-wide turn: true for the one caller that takes `name` within `ttlMs` (SET NX PX).
   * The sweepers of all delivery workers use it so that one of them works per interval.
   */
  async claim(name: string, ttlMs: number): Promise<boolean> {
    const key = `${this.keyPrefix}{sweeper}:${name}`;
    return (await this.#run('claim', () => this.client.set(key, String(process.pid), 'PX', Math.max(1, Math.floor(ttlMs)), 'NX'))) === 'OK';
  }

  async pending(mailboxId: string): Promise<string[]> {
    const k = this.keys(mailboxId);
    return this.#run('pending', () => this.client.smembers(k.pending));
  }

  async removePending(mailboxId: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const k = this.keys(mailboxId);
    await this.#run('pending-remove', () => this.client.srem(k.pending, ...ids));
  }

  /** Of these ids, those neither indexed nor pending (none while the maildrop lock is held). */
  async orphans(mailboxId: string, ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const k = this.keys(mailboxId);
    return (await this.#run('orphans', () => this.#script('posternOrphans')(k.idx, k.pending, k.lock, ...ids))) as string[];
  }

  /** Rebuild: index listed objects not indexed and not pending; -1 when `token` lost the lock. */
  async rebuildAdd(mailboxId: string, token: string, entries: readonly MessageMeta[]): Promise<number> {
    const k = this.keys(mailboxId);
    const args: Array<string | number> = [token];
    for (const e of entries) args.push(e.uid, e.size);
    return Number(await this.#run('rebuild-add', () => this.#script('posternRebuildAdd')(k.lock, k.idx, k.pending, ...args)));
  }

  async rebuildTotals(mailboxId: string, token: string): Promise<{ count: number; octets: number } | null> {
    const k = this.keys(mailboxId);
    const reply = (await this.#run('rebuild-totals', () => this.#script('posternRebuildTotals')(k.lock, k.idx, k.tot, token))) as
      | [number, number]
      | null;
    return reply === null ? null : { count: Number(reply[0]), octets: Number(reply[1]) };
  }

  /** Mailbox ids with a pending-deletion set, from a SCAN of every master (Cluster) or the one server. */
  async *mailboxesWithPending(): AsyncGenerator<string> {
    const match = `${globEscape(this.keyPrefix)}{m:*${PENDING_SUFFIX}`;
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const start = this.keyPrefix.length + 3;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.#run('scan', () => node.scan(cursor, 'MATCH', match, 'COUNT', 1000));
        cursor = next;
        for (const key of keys) if (key.endsWith(PENDING_SUFFIX)) yield key.slice(start, -PENDING_SUFFIX.length);
      } while (cursor !== '0');
    }
  }

  /** Closes the client: QUIT, then disconnect (which also ends Sentinel failover-detector connections). */
  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      // Not connected: nothing to say goodbye to.
    } finally {
      this.client.disconnect();
    }
  }
}

/** A script that reached Redis after its caller stopped waiting; it changed nothing. */
function late(operation: string): StoreError {
  return new StoreError('backend', `redis ${operation} arrived after its deadline; nothing changed`, { temporary: true });
}

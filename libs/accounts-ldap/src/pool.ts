/**
 * Connections to a list of LDAP servers with failover, and bounded pools of them.
 *
 * Sockets are opened here (plain TCP, or TLS for ldaps://) with a connect timeout that covers
 * the TLS handshake, against the configured URLs in order; a server that fails to connect is
 * skipped for `retryAfterMs` (tried last, not never). The connected socket is handed to an
 * ldapts Client, which adds StartTLS when configured. Every operation runs under a deadline:
 * when it passes, the socket is destroyed and the caller gets a temporary error.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { AccountsError } from '@postern/accounts';
import { Client, ResultCodeError } from 'ldapts';

export interface ServerUrl {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** ldaps:// (TLS from the first byte). */
  readonly secure: boolean;
}

/** `ldap://host[:port]` or `ldaps://host[:port]`; throws a RangeError otherwise. */
export function parseLdapUrl(url: string): ServerUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RangeError(`"${url}" is not an ldap:// or ldaps:// URL`);
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  if (scheme !== 'ldap' && scheme !== 'ldaps') throw new RangeError(`"${url}" is not an ldap:// or ldaps:// URL`);
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search !== '' || parsed.username !== '') {
    throw new RangeError(`"${url}": only scheme, host and port are allowed`);
  }
  const secure = scheme === 'ldaps';
  let host = parsed.hostname;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '') throw new RangeError(`"${url}" has no host`);
  const port = parsed.port === '' ? (secure ? 636 : 389) : Number(parsed.port);
  return { url, host, port, secure };
}

/** Counters of directory round trips (the benchmark and the tests read them). */
export interface LdapStats {
  connects: number;
  binds: number;
  searches: number;
}

export interface ServersOptions {
  readonly servers: readonly ServerUrl[];
  readonly startTls: boolean;
  /** CA and other TLS settings; the host name is always verified. */
  readonly tls: ConnectionOptions;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  readonly retryAfterMs: number;
  readonly stats: LdapStats;
  readonly now?: () => number;
}

/** The reason an AbortSignal carries, or a standard AbortError. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function unavailable(text: string, cause?: unknown): AccountsError {
  return new AccountsError('unavailable', text, { cause, temporary: true });
}

/**
 * Runs `work` until `deadline` (ms since the epoch) or the signal; on either, `onCancel` runs
 * (it destroys the socket, which also settles the work) and the caller gets the error at once.
 */
export function underDeadline<T>(
  work: Promise<T>,
  deadline: number,
  signal: AbortSignal | undefined,
  what: string,
  onCancel: () => void,
  now: () => number = Date.now,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const onAbort = (): void => {
      if (!finish()) return;
      onCancel();
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      if (!finish()) return;
      onCancel();
      reject(unavailable(`${what}: no answer within the deadline`));
    }, Math.max(0, deadline - now()));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        if (finish()) resolve(v);
      },
      (e: unknown) => {
        if (finish()) reject(e);
      },
    );
  });
}

/** One connection: the ldapts client and the socket under it (destroyed on a deadline). */
export class LdapConnection {
  readonly client: Client;
  readonly server: ServerUrl;
  private readonly socket: Socket;
  private readonly stats: LdapStats;

  /** When it was opened (ms since the epoch): old connections are retired so failback happens. */
  readonly openedAt: number;

  constructor(client: Client, server: ServerUrl, socket: Socket, stats: LdapStats, openedAt: number) {
    this.client = client;
    this.server = server;
    this.socket = socket;
    this.stats = stats;
    this.openedAt = openedAt;
  }

  get alive(): boolean {
    return !this.socket.destroyed && this.client.isConnected;
  }

  async bind(name: string, password: string): Promise<void> {
    this.stats.binds++;
    await this.client.bind(name, password);
  }

  search(base: string, options: Parameters<Client['search']>[1]): ReturnType<Client['search']> {
    this.stats.searches++;
    return this.client.search(base, options);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Polite close: unbind, then make sure the socket is gone. */
  async close(): Promise<void> {
    if (this.alive) await this.client.unbind().catch(() => undefined);
    this.socket.destroy();
  }
}

/** The configured servers, their health, and how to open a connection to the first that answers. */
export class Servers {
  readonly options: ServersOptions;
  private readonly downUntil = new Map<string, number>();
  private readonly now: () => number;

  constructor(options: ServersOptions) {
    if (options.servers.length === 0) throw new RangeError('at least one LDAP URL is needed');
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** Healthy servers in configured order, then those that failed recently (as a last resort). */
  private order(): ServerUrl[] {
    const now = this.now();
    const up: ServerUrl[] = [];
    const down: ServerUrl[] = [];
    for (const s of this.options.servers) ((this.downUntil.get(s.url) ?? 0) > now ? down : up).push(s);
    return [...up, ...down];
  }

  /** A server that failed to connect or timed out is skipped for a while. */
  markDown(server: ServerUrl): void {
    this.downUntil.set(server.url, this.now() + this.options.retryAfterMs);
  }

  async open(deadline: number, signal: AbortSignal | undefined): Promise<LdapConnection> {
    const failures: string[] = [];
    for (const server of this.order()) {
      if (signal?.aborted) throw abortReason(signal);
      const remaining = deadline - this.now();
      if (remaining <= 0) {
        failures.push(`${server.url}: not tried (deadline passed)`);
        break;
      }
      const until = this.now() + Math.min(this.options.connectTimeoutMs, remaining);
      try {
        const connection = await this.connectTo(server, until, signal);
        this.downUntil.delete(server.url);
        return connection;
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        this.markDown(server);
        failures.push(`${server.url}: ${message(e)}`);
      }
    }
    throw unavailable(`no LDAP server answered: ${failures.join('; ')}`);
  }

  private tlsFor(server: ServerUrl): ConnectionOptions {
    // SNI takes a host name only; identity is checked against `host` either way.
    return { ...this.options.tls, host: server.host, ...(isIP(server.host) === 0 ? { servername: server.host } : {}) };
  }

  private async connectTo(server: ServerUrl, until: number, signal: AbortSignal | undefined): Promise<LdapConnection> {
    this.options.stats.connects++;
    const socket: Socket = server.secure
      ? tlsConnect({ ...this.tlsFor(server), port: server.port })
      : netConnect({ host: server.host, port: server.port });
    socket.setNoDelay(true);
    const ready = new Promise<void>((resolve, reject) => {
      socket.once(server.secure ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    const destroy = (): void => {
      socket.destroy();
    };
    await underDeadline(ready, until, signal, `connect to ${server.url}`, destroy, this.now);
    socket.removeAllListeners('error');
    socket.on('error', () => undefined);
    let handedOver = false;
    const client = new Client({
      // The socket is already connected (and encrypted for ldaps://): ldapts talks through it.
      url: `ldap://${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`,
      timeout: this.options.timeoutMs,
      connectTimeout: this.options.connectTimeoutMs,
      createConnection: (() => {
        // ldapts reconnects on its own after a close; a pooled connection must not.
        if (handedOver) throw new Error('connection closed');
        handedOver = true;
        return socket;
      }) as unknown as typeof netConnect,
    });
    const connection = new LdapConnection(client, server, socket, this.options.stats, Date.now());
    if (this.options.startTls && !server.secure) {
      await underDeadline(client.startTLS(this.tlsFor(server)), until + this.options.timeoutMs, signal, `StartTLS with ${server.url}`, destroy, this.now).catch(
        (e: unknown) => {
          destroy();
          throw e;
        },
      );
    }
    return connection;
  }
}

type Waiter = {
  readonly resolve: (c: LdapConnection | null) => void;
};

export interface PoolOptions {
  readonly name: string;
  readonly max: number;
  /**
   * A connection older than this is closed when it comes back to the pool, so connections move
   * back to the first URL after a failover, and spread over servers that were added. 0: one use.
   */
  readonly maxAgeMs: number;
  /** Runs on each new connection before first use (the service account bind). */
  readonly prepare?: (connection: LdapConnection, deadline: number, signal: AbortSignal | undefined) => Promise<void>;
}

/** True for errors that mean the LDAP server answered (the connection itself is fine). */
export function isLdapResult(e: unknown): boolean {
  return e instanceof ResultCodeError;
}

/** A bounded pool of connections; `use()` lends one for a unit of work. */
export class Pool {
  private readonly servers: Servers;
  private readonly options: PoolOptions;
  private readonly idle: LdapConnection[] = [];
  private readonly waiters: Waiter[] = [];
  private size = 0;
  private closed = false;

  constructor(servers: Servers, options: PoolOptions) {
    this.servers = servers;
    this.options = options;
  }

  get stats(): { readonly size: number; readonly idle: number; readonly waiting: number } {
    return { size: this.size, idle: this.idle.length, waiting: this.waiters.length };
  }

  /**
   * Lends a connection to `work` until `deadline`. An LDAP error answer leaves the connection
   * in the pool; anything else (closed, timed out) discards it. A reused connection that turns
   * out closed is replaced once, so a restarted server costs no login.
   */
  async use<T>(work: (c: LdapConnection) => Promise<T>, deadline: number, signal: AbortSignal | undefined, what: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const [connection, reused] = await this.acquire(deadline, signal);
      try {
        const result = await underDeadline(work(connection), deadline, signal, `${what} on ${connection.server.url}`, () => connection.destroy());
        this.release(connection);
        return result;
      } catch (e) {
        if (isLdapResult(e) && connection.alive) {
          this.release(connection);
          throw e;
        }
        this.discard(connection);
        if (signal?.aborted) throw abortReason(signal);
        const timedOut = e instanceof AccountsError || /timed out/i.test(message(e));
        if (timedOut) this.servers.markDown(connection.server);
        if (reused && !timedOut && attempt === 0 && Date.now() < deadline) continue;
        throw e instanceof AccountsError ? e : unavailable(`${what} on ${connection.server.url}: ${message(e)}`, e);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.resolve(null);
    const idle = this.idle.splice(0);
    this.size -= idle.length;
    await Promise.all(idle.map((c) => c.close()));
  }

  private async acquire(deadline: number, signal: AbortSignal | undefined): Promise<[LdapConnection, boolean]> {
    for (;;) {
      if (this.closed) throw new AccountsError('closed', `${this.options.name} pool is closed`);
      while (this.idle.length > 0) {
        const c = this.idle.pop() as LdapConnection;
        if (c.alive) return [c, true];
        this.size--;
        c.destroy();
      }
      if (this.size < this.options.max) {
        this.size++;
        try {
          const c = await this.servers.open(deadline, signal);
          try {
            await this.options.prepare?.(c, deadline, signal);
          } catch (e) {
            c.destroy();
            throw e;
          }
          return [c, false];
        } catch (e) {
          this.size--;
          this.wakeOne();
          throw e;
        }
      }
      const handed = await this.wait(deadline, signal);
      if (handed !== null) return [handed, true];
    }
  }

  private wait(deadline: number, signal: AbortSignal | undefined): Promise<LdapConnection | null> {
    let waiter: Waiter | undefined;
    const queued = new Promise<LdapConnection | null>((resolve) => {
      waiter = { resolve };
      this.waiters.push(waiter);
    });
    const leave = (): void => {
      const i = this.waiters.indexOf(waiter as Waiter);
      if (i !== -1) this.waiters.splice(i, 1);
    };
    return underDeadline(queued, deadline, signal, `${this.options.name} pool: waiting for a free connection`, leave).catch((e: unknown) => {
      // A connection handed over while the deadline fired goes back to the pool.
      void queued.then((c) => c && this.release(c));
      throw e;
    });
  }

  private release(c: LdapConnection): void {
    if (this.closed || !c.alive) {
      this.discard(c);
      return;
    }
    if (Date.now() - c.openedAt >= this.options.maxAgeMs) {
      this.size--;
      this.wakeOne();
      void c.close();
      return;
    }
    const w = this.waiters.shift();
    if (w) w.resolve(c);
    else this.idle.push(c);
  }

  private discard(c: LdapConnection): void {
    c.destroy();
    this.size--;
    this.wakeOne();
  }

  private wakeOne(): void {
    this.waiters.shift()?.resolve(null);
  }
}

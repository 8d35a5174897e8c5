/** POP3 listeners (plain with STLS, and implicit TLS), connection limits, drain. */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { isTrusted, parseProxyHeader, trustedNetworks, type ProxiedAddress } from './proxy-protocol.js';
import { serveConnection, type ConnectionInfo, type SessionHandle } from './connection.js';
import type { GatewayDeps, GatewaySettings, ListenAddress } from './settings.js';

/** After the drain deadline, how long sessions get to notice the shutdown before being dropped. */
const SHUTDOWN_GRACE_MS = 2_000;

/** The settings `reconfigure` applies to new connections; the rest take a restart. */
export const LIVE_GATEWAY_SETTINGS = [
  'maxConnections',
  'maxConnectionsPerIp',
  'maxConnectionsPerIpPerMinute',
  'loginTimeoutMs',
  'idleTimeoutMs',
  'authFailureDelayMs',
  'maxAuthFailures',
  'maxBadCommands',
  'loginDelay',
  'expire',
] as const satisfies readonly (keyof GatewaySettings)[];

export type LiveGatewaySettings = Pick<GatewaySettings, (typeof LIVE_GATEWAY_SETTINGS)[number]>;

export interface Gateway {
  /** Bound addresses (port 0 in the settings becomes the real port). */
  readonly pop3: ListenAddress | null;
  readonly pop3s: ListenAddress | null;
  /** Sessions open now. */
  activeSessions(): number;
  /**
   * Apply new limits, timeouts and policies (`LIVE_GATEWAY_SETTINGS`; other fields are ignored)
   * to connections accepted from now on. Sessions already open keep the ones they started with.
   */
  reconfigure(settings: LiveGatewaySettings): void;
  /** Stop accepting; end sessions still open after `drainMs` with `-ERR [SYS/TEMP]`; resolve when all are gone. */
  close(drainMs?: number): Promise<void>;
}

type HeaderRead = { kind: 'header'; source: ProxiedAddress | null; rest: Buffer } | { kind: 'invalid'; reason: string };

/** Read a PROXY header off a fresh connection; whatever follows it is returned in `rest`. */
function readProxyHeader(socket: Socket, timeoutMs: number): Promise<HeaderRead> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const finish = (result: HeaderRead): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered);
      if (parsed.kind === 'incomplete') return;
      if (parsed.kind === 'invalid') finish({ kind: 'invalid', reason: parsed.reason });
      else finish({ kind: 'header', source: parsed.source, rest: buffered.subarray(parsed.length) });
    };
    const onEnd = (): void => finish({ kind: 'invalid', reason: 'closed before a PROXY header' });
    const timer = setTimeout(() => finish({ kind: 'invalid', reason: 'no PROXY header in time' }), timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.resume();
  });
}

/** A Duplex over `socket` whose readable side starts with `first` (bytes already read off it). */
function replayingStream(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  if (first.length > 0) stream.push(first);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.on('end', () => stream.push(null));
  socket.on('close', () => stream.destroy());
  return stream;
}

/**
 * New connections per address in a fixed one-minute window (0: no limit). Memory follows the
 * addresses seen in the current window only.
 */
class RateWindow {
  #limit: number;
  readonly #windowMs: number;
  #windowStart = 0;
  #counts = new Map<string, number>();

  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  set limit(limit: number) {
    this.#limit = limit;
  }

  admit(address: string): boolean {
    if (this.#limit <= 0) return true;
    const now = Date.now();
    if (now - this.#windowStart >= this.#windowMs) {
      this.#windowStart = now;
      this.#counts = new Map();
    }
    const n = (this.#counts.get(address) ?? 0) + 1;
    this.#counts.set(address, n);
    return n <= this.#limit;
  }
}

function bound(server: Server): ListenAddress {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('listener has no address');
  return { host: a.address, port: a.port };
}

async function listen(server: Server, address: ListenAddress): Promise<void> {
  server.listen({ host: address.host, port: address.port, backlog: 1024 });
  await once(server, 'listening');
}

export async function startGateway(initial: GatewayDeps): Promise<Gateway> {
  // Replaced by reconfigure(); each connection keeps the deps it was accepted with.
  let deps = initial;
  let settings = deps.settings;
  const { logger } = deps;
  deps.metrics.connectionLimit.set(settings.maxConnections);
  const sessions = new Set<SessionHandle>();
  const connectionRate = new RateWindow(settings.maxConnectionsPerIpPerMinute, 60_000);
  const running = new Set<Promise<void>>();
  const perIp = new Map<string, number>();
  let connections = 0;

  const register = (handle: SessionHandle): (() => void) => {
    sessions.add(handle);
    return () => sessions.delete(handle);
  };

  function accept(socket: Socket | TLSSocket, secure: boolean, proxied: ProxiedAddress | null): void {
    const remoteAddress = proxied?.address ?? socket.remoteAddress ?? 'unknown';
    const info: ConnectionInfo = { remoteAddress, remotePort: proxied?.port ?? socket.remotePort ?? 0, secure };
    const fromIp = perIp.get(remoteAddress) ?? 0;
    const listener = secure ? 'pop3s' : 'pop3';
    const limit =
      connections >= settings.maxConnections
        ? 'total_limit'
        : fromIp >= settings.maxConnectionsPerIp
          ? 'ip_limit'
          : !connectionRate.admit(remoteAddress)
            ? 'ip_rate'
            : null;
    if (limit !== null) {
      deps.metrics.connections.inc({ listener, result: `refused_${limit}` });
      logger.warn({ ip: remoteAddress, limit }, 'connection refused: limit reached');
      socket.on('error', () => undefined);
      socket.end('-ERR [SYS/TEMP] Too many connections, try again later.\r\n');
      return;
    }
    deps.metrics.connections.inc({ listener, result: 'accepted' });
    if (secure) deps.metrics.tlsHandshakes.inc({ listener: 'pop3s', result: 'ok' });
    connections += 1;
    perIp.set(remoteAddress, fromIp + 1);
    const done = serveConnection(socket, info, deps, tlsContext, register)
      .catch((e: Error) => logger.error({ err: e.message }, 'connection handler failed'))
      .finally(() => {
        connections -= 1;
        const n = (perIp.get(remoteAddress) ?? 1) - 1;
        if (n <= 0) perIp.delete(remoteAddress);
        else perIp.set(remoteAddress, n);
        running.delete(done);
      });
    running.add(done);
  }

  const proxyTrusted = settings.proxyTrustedNetworks.length > 0 ? trustedNetworks(settings.proxyTrustedNetworks) : null;

  /** A new TCP connection: the PROXY header first when it comes from a trusted balancer, then TLS on 995. */
  async function onConnection(raw: Socket, secure: boolean): Promise<void> {
    raw.on('error', (e) => logger.debug({ err: e.message }, 'socket error before the session'));
    const listener = secure ? 'pop3s' : 'pop3';
    let proxied: ProxiedAddress | null = null;
    let leftover: Buffer | null = null;
    if (proxyTrusted && isTrusted(proxyTrusted, raw.remoteAddress ?? '')) {
      const header = await readProxyHeader(raw, settings.tlsHandshakeTimeoutMs);
      if (header.kind !== 'header') {
        deps.metrics.connections.inc({ listener, result: 'refused_proxy_header' });
        logger.warn({ peer: raw.remoteAddress, reason: header.reason }, 'connection refused: bad PROXY header');
        raw.destroy();
        return;
      }
      proxied = header.source;
      leftover = header.rest;
    }
    if (!secure) {
      if (leftover && leftover.length > 0) raw.unshift(leftover);
      accept(raw, false, proxied);
      return;
    }
    // Implicit TLS. After a PROXY header the first TLS bytes may already be in hand, so TLS then
    // reads through a JS stream that starts with them; without one it runs on the socket itself.
    const transport = leftover === null ? raw : replayingStream(raw, leftover);
    const tlsSocket = new TLSSocket(transport, { isServer: true, secureContext: tlsContext as SecureContext });
    tlsSocket.on('error', (e) => logger.debug({ err: e.message, peer: proxied?.address ?? raw.remoteAddress }, 'TLS error'));
    try {
      await Promise.race([
        once(tlsSocket, 'secure'),
        new Promise((_, reject) => setTimeout(() => reject(new Error('TLS handshake timed out')), settings.tlsHandshakeTimeoutMs).unref()),
      ]);
    } catch (e) {
      deps.metrics.tlsHandshakes.inc({ listener: 'pop3s', result: 'failed' });
      logger.debug({ err: (e as Error).message, peer: proxied?.address ?? raw.remoteAddress }, 'TLS handshake failed');
      tlsSocket.destroy();
      raw.destroy();
      return;
    }
    accept(tlsSocket, true, proxied ?? { address: raw.remoteAddress ?? 'unknown', port: raw.remotePort ?? 0 });
  }

  const tlsContext = settings.tls ? createSecureContext(settings.tls) : null;
  const servers: Server[] = [];
  let pop3: ListenAddress | null = null;
  let pop3s: ListenAddress | null = null;
  const handle = (secure: boolean) => (raw: Socket) => {
    onConnection(raw, secure).catch((e: Error) => {
      logger.warn({ err: e.message }, 'connection setup failed');
      raw.destroy();
    });
  };
  if (settings.pop3) {
    const server = createServer({ noDelay: true, pauseOnConnect: true }, handle(false));
    await listen(server, settings.pop3);
    pop3 = bound(server);
    servers.push(server);
  }
  if (settings.pop3s) {
    if (!settings.tls) throw new Error('POP3S_LISTEN needs a certificate (TLS_CERT and TLS_KEY)');
    const server = createServer({ noDelay: true }, handle(true));
    await listen(server, settings.pop3s);
    pop3s = bound(server);
    servers.push(server);
  }
  logger.info({ pop3, pop3s }, 'POP3 listening');

  return {
    pop3,
    pop3s,
    activeSessions: () => running.size,
    reconfigure(next) {
      const live: Partial<Record<keyof LiveGatewaySettings, unknown>> = {};
      for (const key of LIVE_GATEWAY_SETTINGS) live[key] = next[key];
      settings = { ...settings, ...(live as LiveGatewaySettings) };
      deps = { ...deps, settings };
      connectionRate.limit = settings.maxConnectionsPerIpPerMinute;
      deps.metrics.connectionLimit.set(settings.maxConnections);
    },
    async close(drainMs = 0) {
      for (const s of servers) s.close();
      if (running.size > 0 && drainMs > 0) {
        await Promise.race([Promise.allSettled([...running]), new Promise((r) => setTimeout(r, drainMs).unref())]);
      }
      for (const handle of sessions) handle.shutdown();
      // A session blocked mid-reply (a client that stopped reading) never reaches a command
      // boundary: after a short grace, drop what is left. Nothing is committed either way.
      const grace = setTimeout(() => {
        for (const handle of sessions) handle.destroy();
      }, SHUTDOWN_GRACE_MS);
      await Promise.allSettled([...running]);
      clearTimeout(grace);
    },
  };
}

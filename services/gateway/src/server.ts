/** POP3 listeners (plain with STLS, and implicit TLS), connection limits, drain. */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { serveConnection, type ConnectionInfo, type SessionHandle } from './connection.js';
import type { GatewayDeps, ListenAddress } from './settings.js';

/** After the drain deadline, how long sessions get to notice the shutdown before being dropped. */
const SHUTDOWN_GRACE_MS = 2_000;

export interface Gateway {
  /** Bound addresses (port 0 in the settings becomes the real port). */
  readonly pop3: ListenAddress | null;
  readonly pop3s: ListenAddress | null;
  /** Sessions open now. */
  activeSessions(): number;
  /** Stop accepting; end sessions still open after `drainMs` with `-ERR [SYS/TEMP]`; resolve when all are gone. */
  close(drainMs?: number): Promise<void>;
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

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { settings, logger } = deps;
  const sessions = new Set<SessionHandle>();
  const running = new Set<Promise<void>>();
  const perIp = new Map<string, number>();
  let connections = 0;

  const register = (handle: SessionHandle): (() => void) => {
    sessions.add(handle);
    return () => sessions.delete(handle);
  };

  function accept(socket: Socket | TLSSocket, secure: boolean): void {
    const remoteAddress = socket.remoteAddress ?? 'unknown';
    const info: ConnectionInfo = { remoteAddress, remotePort: socket.remotePort ?? 0, secure };
    const fromIp = perIp.get(remoteAddress) ?? 0;
    const listener = secure ? 'pop3s' : 'pop3';
    if (connections >= settings.maxConnections || fromIp >= settings.maxConnectionsPerIp) {
      const which = connections >= settings.maxConnections ? 'total' : 'per-ip';
      deps.metrics.connections.inc({ listener, result: `refused_${which === 'total' ? 'total_limit' : 'ip_limit'}` });
      logger.warn({ ip: remoteAddress, limit: which }, 'connection refused: limit reached');
      socket.on('error', () => undefined);
      socket.end('-ERR [SYS/TEMP] Too many connections, try again later.\r\n');
      return;
    }
    deps.metrics.connections.inc({ listener, result: 'accepted' });
    if (secure) deps.metrics.tlsHandshakes.inc({ listener: 'pop3s', result: 'ok' });
    connections += 1;
    perIp.set(remoteAddress, fromIp + 1);
    const done = serveConnection(socket, info, deps, stlsContext, register)
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

  const stlsContext = settings.tls ? createSecureContext(settings.tls) : null;
  const servers: Server[] = [];
  let pop3: ListenAddress | null = null;
  let pop3s: ListenAddress | null = null;
  if (settings.pop3) {
    const server = createServer({ noDelay: true }, (socket) => accept(socket, false));
    await listen(server, settings.pop3);
    pop3 = bound(server);
    servers.push(server);
  }
  if (settings.pop3s) {
    if (!settings.tls) throw new Error('POP3S_LISTEN needs a certificate (TLS_CERT and TLS_KEY)');
    const server = createTlsServer(
      { ...settings.tls, handshakeTimeout: settings.tlsHandshakeTimeoutMs, noDelay: true },
      (socket) => accept(socket, true),
    );
    server.on('tlsClientError', (e, socket) => {
      deps.metrics.tlsHandshakes.inc({ listener: 'pop3s', result: 'failed' });
      logger.debug({ err: e.message, ip: socket.remoteAddress }, 'TLS handshake failed');
    });
    await listen(server, settings.pop3s);
    pop3s = bound(server);
    servers.push(server);
  }
  logger.info({ pop3, pop3s }, 'POP3 listening');

  return {
    pop3,
    pop3s,
    activeSessions: () => running.size,
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

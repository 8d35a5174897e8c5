/** Admin HTTP listener: /healthz (alive), /readyz (serving, not draining), /metrics (Prometheus). */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { ListenAddress } from '@postern/gateway';
import { METRICS_CONTENT_TYPE } from '@postern/telemetry';

export interface AdminServer {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

/** Readiness: null when ready, else the reason (shown in the 503 body). */
export type ReadyCheck = () => Promise<string | null>;

export async function startAdmin(listen: ListenAddress, ready: ReadyCheck, metrics: () => Promise<string>): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics().then(
        (text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${e.message}\n`),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      ready().then(
        (reason) =>
          res.writeHead(reason === null ? 200 : 503, { 'content-type': 'text/plain' }).end(reason === null ? 'ready\n' : `not ready: ${reason}\n`),
        (e: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${e.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.listen(listen.port, listen.host);
  await once(server, 'listening');
  const a = server.address();
  return {
    address: a && typeof a === 'object' ? { host: a.address, port: a.port } : listen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Worker thread entry of the VerifierPool: receives `{ id, password, hash }`, answers
 * `{ id, ok }` or `{ id, error, code }`. Compiled to verify-worker.js next to verify-pool.js.
 */
import { parentPort } from 'node:worker_threads';
import { verifyPasswordHash } from './schemes.js';

export interface VerifyRequest {
  readonly id: number;
  readonly password: string;
  readonly hash: string;
}

export type VerifyResponse =
  | { readonly id: number; readonly ok: boolean }
  | { readonly id: number; readonly error: string; readonly code: string | undefined };

if (parentPort === null) throw new Error('verify-worker must run in a worker thread');
const port = parentPort;

port.on('message', (req: VerifyRequest) => {
  verifyPasswordHash(req.password, req.hash).then(
    (ok) => port.postMessage({ id: req.id, ok } satisfies VerifyResponse),
    (e: unknown) => {
      const err = e as { message?: unknown; code?: unknown };
      port.postMessage({
        id: req.id,
        error: typeof err.message === 'string' ? err.message : 'verification failed',
        code: typeof err.code === 'string' ? err.code : undefined,
      } satisfies VerifyResponse);
    },
  );
});

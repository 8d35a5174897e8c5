/**
 * One certificate per test process, made by the server's own ensureTlsFiles, so that TLS test
 * servers start without generating a key pair each. It names 127.0.0.1 and localhost; clients
 * use the certificate itself as their only trust anchor.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTlsFiles } from '../../src/tls.js';

export interface SharedTls {
  readonly cert: string;
  readonly key: string;
}

let shared: Promise<SharedTls> | null = null;

export function sharedTls(): Promise<SharedTls> {
  shared ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-test-tls-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const files = await ensureTlsFiles(undefined, undefined, dir);
    return { cert: files.cert, key: files.key };
  })();
  return shared;
}

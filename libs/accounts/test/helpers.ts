import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { inlineVerifier, type PasswordVerifier } from '../src/index.js';

/** A fresh temporary directory, removed when the test file ends. */
export async function tempDir(prefix = 'postern-accounts-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Verifies inline and records every call. */
export class CountingVerifier implements PasswordVerifier {
  readonly calls: { password: string; hash: string }[] = [];
  failWith: Error | null = null;
  async verify(password: string, hash: string, signal?: AbortSignal): Promise<boolean> {
    this.calls.push({ password, hash });
    if (this.failWith) throw this.failWith;
    return inlineVerifier.verify(password, hash, signal);
  }
}

/** Poll `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

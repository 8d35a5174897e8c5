import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AccountsError, hashPassword, VerifierPool, verifyWorkerLocation } from '../src/index.js';

const run = promisify(execFile);
const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));

/** A SHA512-CRYPT hash slow enough (a few hundred ms) to still be running while a test pokes at the pool. */
const slow = hashPassword('slow', 'SHA512-CRYPT', { rounds: 100_000 });

describe('VerifierPool', () => {
  it('defaults to min(4, availableParallelism) workers and starts them lazily', async () => {
    const pool = new VerifierPool();
    try {
      assert.equal(pool.size, Math.min(4, availableParallelism()));
      assert.equal(pool.stats.workers, 0);
      pool.start();
      assert.equal(pool.stats.workers, pool.size);
    } finally {
      await pool.close();
    }
  });

  it('verifies every scheme in workers', async () => {
    const pool = new VerifierPool({ size: 2 });
    try {
      for (const scheme of ['SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SSHA512', 'PLAIN'] as const) {
        const stored = await hashPassword('right', scheme, { cost: 4, argon2: { memoryKiB: 1024, iterations: 1 } });
        assert.equal(await pool.verify('right', stored), true, scheme);
        assert.equal(await pool.verify('wrong', stored), false, scheme);
      }
    } finally {
      await pool.close();
    }
  });

  it('verifies cheap schemes inline without starting a worker', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      assert.equal(await pool.verify('x', '{PLAIN}x'), true);
      assert.equal(await pool.verify('x', await hashPassword('x', 'SSHA512')), true);
      assert.equal(pool.stats.workers, 0);
    } finally {
      await pool.close();
    }
  });

  it('keeps the event loop free while a slow hash is verified', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      const stored = await slow;
      let ticks = 0;
      let done = false;
      const spin = (): void => {
        if (done) return;
        ticks++;
        setImmediate(spin);
      };
      setImmediate(spin);
      const ok = await pool.verify('slow', stored);
      done = true;
      assert.equal(ok, true);
      // Run on the event loop, 100 000 rounds would leave no room for a single tick.
      assert.ok(ticks > 20, `only ${ticks} event loop turns during verification`);
    } finally {
      await pool.close();
    }
  });

  it('refuses work beyond the queue bound with a temporary "busy" error', async () => {
    const pool = new VerifierPool({ size: 1, maxQueue: 2 });
    try {
      const stored = await slow;
      const running = pool.verify('slow', stored);
      const queued = [pool.verify('slow', stored), pool.verify('nope', stored)];
      assert.deepEqual(pool.stats, { workers: 1, busy: 1, queued: 2 });
      await assert.rejects(pool.verify('slow', stored), (e: unknown) => {
        assert.ok(e instanceof AccountsError);
        assert.equal(e.code, 'busy');
        assert.equal(e.temporary, true);
        return true;
      });
      assert.deepEqual(await Promise.all([running, ...queued]), [true, true, false]);
    } finally {
      await pool.close();
    }
  });

  it('drops a queued task on abort and answers the aborted caller at once', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      const stored = await slow;
      const first = pool.verify('slow', stored);
      const controller = new AbortController();
      const second = pool.verify('slow', stored, controller.signal);
      assert.equal(pool.stats.queued, 1);
      controller.abort();
      await assert.rejects(second, { name: 'AbortError' });
      assert.equal(pool.stats.queued, 0);
      assert.equal(await first, true);
    } finally {
      await pool.close();
    }
  });

  it('answers an aborted running task at once; the worker stays usable', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      const stored = await slow;
      const controller = new AbortController();
      const p = pool.verify('slow', stored, controller.signal);
      setTimeout(() => controller.abort(new Error('client went away')), 20);
      await assert.rejects(p, /client went away/);
      // The caller was answered while the worker was still hashing.
      assert.equal(pool.stats.busy, 1);
      // The next verification queues behind the abandoned one and then runs normally.
      assert.equal(await pool.verify('x', await hashPassword('x', 'SHA512-CRYPT')), true);
      assert.equal(pool.stats.busy, 0);
    } finally {
      await pool.close();
    }
  });

  it('rejects at once when the signal is already aborted', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      await assert.rejects(pool.verify('x', await slow, AbortSignal.abort()), { name: 'AbortError' });
      assert.equal(pool.stats.workers, 0);
    } finally {
      await pool.close();
    }
  });

  it('recovers from a worker that dies mid-verification', async () => {
    const pool = new VerifierPool({ size: 1 });
    try {
      const stored = await slow;
      const p = pool.verify('slow', stored);
      const slots = (pool as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots;
      await new Promise((r) => setTimeout(r, 50));
      await slots[0]!.worker.terminate();
      await assert.rejects(p, { code: 'unavailable' });
      assert.equal(await pool.verify('slow', stored), true);
    } finally {
      await pool.close();
    }
  });

  it('rejects pending work when closed', async () => {
    const pool = new VerifierPool({ size: 1 });
    const stored = await slow;
    const running = assert.rejects(pool.verify('slow', stored), { code: 'closed' });
    const queued = assert.rejects(pool.verify('slow', stored), { code: 'closed' });
    await pool.close();
    await running;
    await queued;
    await assert.rejects(pool.verify('slow', stored), { code: 'closed' });
  });

  it('runs the TypeScript worker when loaded from src', () => {
    const loc = verifyWorkerLocation();
    assert.equal(loc.fromSource, true);
    assert.ok(loc.url.pathname.endsWith('/src/verify-worker.ts'));
    assert.ok(existsSync(fileURLToPath(loc.url)));
  });

  it('runs the compiled worker from a tsc build with plain node (no tsx)', async () => {
    // Build into a private directory inside the package (so hash-wasm resolves as in dist/),
    // then load it with plain node: this is the production path.
    const out = await mkdtemp(join(packageDir, '.test-dist-'));
    try {
      const tsc = join(packageDir, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc');
      await run(process.execPath, [tsc, '-p', join(packageDir, 'tsconfig.json'), '--outDir', out, '--declaration', 'false', '--sourceMap', 'false']);
      const script = `
        const m = await import(${JSON.stringify(join(out, 'index.js'))});
        const loc = m.verifyWorkerLocation();
        const pool = new m.VerifierPool({ size: 1 });
        const good = await m.hashPassword('pw', 'BLF-CRYPT', { cost: 4 });
        const out = { url: loc.url.href, fromSource: loc.fromSource, ok: await pool.verify('pw', good), bad: await pool.verify('px', good), workers: pool.stats.workers };
        await pool.close();
        console.log(JSON.stringify(out));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: packageDir, env: { ...process.env, NODE_OPTIONS: '' } });
      const result = JSON.parse(stdout) as { url: string; fromSource: boolean; ok: boolean; bad: boolean; workers: number };
      assert.equal(result.fromSource, false);
      assert.ok(result.url.endsWith('/verify-worker.js'), result.url);
      assert.deepEqual([result.ok, result.bad, result.workers], [true, false, 1]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

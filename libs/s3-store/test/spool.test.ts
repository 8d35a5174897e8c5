import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { Spool, removeStaleSpoolFiles } from '../src/index.js';
import { collect } from './lease-suite.js';

test('the spool holds small messages in memory and larger ones in a private file it removes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'postern-spool-test-'));
  try {
    const small = new Spool(10, dir);
    await small.write(Buffer.from('12345'));
    await small.finish();
    assert.deepEqual(await readdir(dir), []);
    assert.equal((small.body() as Buffer).toString(), '12345');

    const large = new Spool(10, dir);
    await large.write(Buffer.from('123456'));
    await large.write(Buffer.from('789abcdef'));
    await large.finish();
    assert.equal((await readdir(dir)).length, 1);
    const body = large.body();
    assert.ok(!Buffer.isBuffer(body));
    assert.equal((await collect(body)).toString(), '123456789abcdef');
    assert.equal((await collect(large.body() as Readable)).toString(), '123456789abcdef', 'a retry reopens the body');
    assert.equal(large.size, 15);
    await large.discard();
    await large.discard();
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('stale spool files (a crash mid-delivery) are removed; fresh ones and other files stay', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'postern-spool-test-'));
  try {
    const old = new Date(Date.now() - 2 * 24 * 3_600_000);
    await writeFile(join(dir, 'postern-spool-old'), 'x');
    await utimes(join(dir, 'postern-spool-old'), old, old);
    await writeFile(join(dir, 'postern-spool-fresh'), 'x');
    await writeFile(join(dir, 'other-file'), 'x');
    await utimes(join(dir, 'other-file'), old, old);
    assert.equal(await removeStaleSpoolFiles(dir, 24 * 3_600_000), 1);
    assert.deepEqual((await readdir(dir)).sort(), ['other-file', 'postern-spool-fresh']);
    assert.equal(await removeStaleSpoolFiles(join(dir, 'missing'), 1), 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it, mock } from 'node:test';
import { messageStream } from '../src/index.js';

/** Resolves with the stream's error, or null when it ends cleanly. */
function outcome(stream: NodeJS.ReadableStream & { on(e: string, f: (...a: unknown[]) => void): unknown }): Promise<Error | null> {
  return new Promise((resolve) => {
    stream.on('error', (e) => resolve(e as Error));
    stream.on('end', () => resolve(null));
  });
}

describe('messageStream stall timeout (network sources)', () => {
  it('fails when the source sends nothing while the reader waits', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const source = new PassThrough();
      const stream = messageStream(source, { bodyLines: null, canonicalize: false, stallTimeoutMs: 1_000 });
      const result = outcome(stream);
      stream.on('data', () => undefined);
      source.write('Subject: x\r\n\r\npart');
      await new Promise((r) => setImmediate(r));
      mock.timers.tick(999);
      source.write(' two\r\n'); // data re-arms the timer
      await new Promise((r) => setImmediate(r));
      mock.timers.tick(999);
      await new Promise((r) => setImmediate(r));
      assert.equal(stream.destroyed, false);
      mock.timers.tick(2);
      const error = await result;
      assert.match(error?.message ?? '', /sent nothing for 1000 ms/);
      assert.equal(source.destroyed, true);
    } finally {
      mock.timers.reset();
    }
  });

  it('does not count time the reader spends not reading (a slow client)', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const source = new PassThrough();
      const stream = messageStream(source, { bodyLines: null, canonicalize: false, stallTimeoutMs: 1_000, highWaterMark: 16 });
      // Fill the stream's buffer with nobody reading: the source is paused, no timer runs.
      source.write(Buffer.alloc(64, 0x61));
      await new Promise((r) => setImmediate(r));
      mock.timers.tick(60_000);
      assert.equal(stream.destroyed, false);
      const chunks: Buffer[] = [];
      const result = outcome(stream);
      stream.on('data', (c: Buffer) => chunks.push(c));
      source.end('\r\n');
      assert.equal(await result, null);
      assert.equal(Buffer.concat(chunks).length, 66);
    } finally {
      mock.timers.reset();
    }
  });
});

import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  CanonicalCounter,
  CanonicalEncoder,
  LfEncoder,
  TopLimiter,
  canonicalSize,
  limitToTop,
  messageStream,
  toCanonical,
  toStoredLf,
} from '../src/index.js';
import { canonicalReference, storedLfReference, topReference } from '../src/reference.js';

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

const INPUTS: Buffer[] = [
  latin1(''),
  latin1('\n'),
  latin1('\r'),
  latin1('\r\n'),
  latin1('\r\r\n'),
  latin1('\n\r'),
  latin1('abc'),
  latin1('Subject: x\nFrom: y\n\nbody\n.\n..x\nend'),
  latin1('Subject: x\r\nFrom: y\r\n\r\nbody\r\n\r\nlast\r\n'),
  latin1('H: 1\r\n\n\r\nb1\nb2\r\nb3\r\rb4\r\r\n\r\r\r\n'),
  latin1('\r\n\r\nbody after empty headers\n'),
  latin1('H: no blank line\nH2: x\r\n'),
  latin1('a\rb\rc\r\r'),
  Buffer.from([0x00, 0x0d, 0x0a, 0x0d, 0xff, 0x0a, 0x0a, 0x0d, 0x0d, 0x0a, 0x80]),
];

/** Every way to cut `input` into two chunks, plus one byte per chunk and the whole. */
function splits(input: Buffer): Buffer[][] {
  const out: Buffer[][] = [[input]];
  for (let k = 0; k <= input.length; k++) out.push([input.subarray(0, k), input.subarray(k)]);
  out.push([...input].map((b) => Buffer.from([b])));
  if (input.length <= 24) {
    for (let i = 1; i < input.length; i++) {
      for (let j = i + 1; j < input.length; j++) out.push([input.subarray(0, i), input.subarray(i, j), input.subarray(j)]);
    }
  }
  return out;
}

function runCanonical(chunks: Buffer[]): { bytes: Buffer; size: number } {
  const encoder = new CanonicalEncoder();
  const parts: Buffer[] = chunks.map((c) => Buffer.from(encoder.push(c)));
  parts.push(encoder.end());
  return { bytes: Buffer.concat(parts), size: encoder.size };
}

function runLf(chunks: Buffer[]): { bytes: Buffer; canonical: number; stored: number } {
  const encoder = new LfEncoder();
  const parts: Buffer[] = chunks.map((c) => Buffer.from(encoder.push(c)));
  parts.push(encoder.end());
  return { bytes: Buffer.concat(parts), canonical: encoder.canonicalSize, stored: encoder.storedSize };
}

function runTop(chunks: Buffer[], n: number): Buffer {
  const limiter = new TopLimiter(n);
  const parts: Buffer[] = [];
  for (const c of chunks) {
    parts.push(Buffer.from(limiter.push(c)));
    if (limiter.done) break;
  }
  return Buffer.concat(parts);
}

function runCounter(chunks: Buffer[]): number {
  const counter = new CanonicalCounter();
  for (const c of chunks) counter.update(c);
  return counter.end();
}

function cut(input: Uint8Array, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(Buffer.from(input.subarray(from, p)));
    from = p;
  }
  out.push(Buffer.from(input.subarray(from)));
  return out;
}

/** Bytes drawn mostly from the ones the rules care about. */
const messageBytes = fc
  .array(fc.oneof(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x20, 0x41), fc.integer({ min: 0, max: 255 })), { maxLength: 200 })
  .map((a) => Uint8Array.from(a));
const cutPoints = fc.array(fc.nat({ max: 400 }), { maxLength: 12 });

describe('canonical form', () => {
  test('reference: LF -> CRLF, CRLF kept, a final CRLF added', () => {
    assert.equal(canonicalReference(latin1('a\nb\r\nc')).toString('latin1'), 'a\r\nb\r\nc\r\n');
    assert.equal(canonicalReference(latin1('')).toString('latin1'), '');
    assert.equal(canonicalReference(latin1('a\r')).toString('latin1'), 'a\r\r\n');
    assert.equal(canonicalReference(latin1('\r\r\n')).toString('latin1'), '\r\r\n');
  });

  test('every chunk split gives the reference output and size', () => {
    for (const input of INPUTS) {
      const expected = canonicalReference(input);
      for (const chunks of splits(input)) {
        const got = runCanonical(chunks);
        assert.deepEqual(got.bytes, expected, JSON.stringify(chunks.map((c) => c.toString('latin1'))));
        assert.equal(got.size, expected.length);
        assert.equal(runCounter(chunks), expected.length);
      }
    }
  });

  test('property: streaming equals the whole-buffer reference', () => {
    fc.assert(
      fc.property(messageBytes, cutPoints, (input, cuts) => {
        const chunks = cut(input, cuts);
        const expected = canonicalReference(input);
        const got = runCanonical(chunks);
        assert.deepEqual(got.bytes, expected);
        assert.equal(got.size, expected.length);
        assert.equal(runCounter(chunks), expected.length);
      }),
      { numRuns: 2000 },
    );
  });

  test('canonical input passes through as the same buffer', () => {
    const encoder = new CanonicalEncoder();
    const chunk = latin1('a\r\nb\r\n');
    assert.equal(encoder.push(chunk), chunk);
    assert.equal(encoder.end().length, 0);
  });

  test('toCanonical() and canonicalSize() over streams', async () => {
    const input = latin1('Subject: s\n\nline\r\nx');
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(cut(input, [3, 9, 14]), { objectMode: false }),
      toCanonical(),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    assert.deepEqual(Buffer.concat(out), canonicalReference(input));
    assert.equal(await canonicalSize(Readable.from(cut(input, [1, 2]), { objectMode: false })), canonicalReference(input).length);
  });
});

describe('stored LF form', () => {
  test('every chunk split gives the reference output and both sizes', () => {
    for (const input of INPUTS) {
      const canonical = canonicalReference(input);
      const expected = storedLfReference(canonical);
      for (const chunks of splits(input)) {
        const got = runLf(chunks);
        assert.deepEqual(got.bytes, expected, JSON.stringify(chunks.map((c) => c.toString('latin1'))));
        assert.equal(got.canonical, canonical.length);
        assert.equal(got.stored, expected.length);
      }
    }
  });

  test('property: input -> stored -> canonical equals canonical(input), sizes match', () => {
    fc.assert(
      fc.property(messageBytes, cutPoints, cutPoints, (input, cuts, readCuts) => {
        const canonical = canonicalReference(input);
        const stored = runLf(cut(input, cuts));
        assert.deepEqual(stored.bytes, storedLfReference(canonical));
        assert.equal(stored.canonical, canonical.length);
        assert.equal(stored.stored, stored.bytes.length);
        // Reading the stored form back through the canonical encoder restores the bytes exactly.
        const back = runCanonical(cut(stored.bytes, readCuts));
        assert.deepEqual(back.bytes, canonical);
        assert.equal(runCounter(cut(stored.bytes, readCuts)), canonical.length);
        // Storing canonical bytes gives the same file as storing the raw input.
        assert.deepEqual(runLf(cut(canonical, readCuts)).bytes, stored.bytes);
      }),
      { numRuns: 2000 },
    );
  });

  test('LF input is stored as it is', () => {
    const encoder = new LfEncoder();
    const chunk = latin1('a\nb\n');
    assert.equal(encoder.push(chunk), chunk);
    assert.equal(encoder.end().length, 0);
    assert.equal(encoder.canonicalSize, 6);
    assert.equal(encoder.storedSize, 4);
  });

  test('toStoredLf() over a stream', async () => {
    const input = latin1('A: b\r\n\r\nx\r\r\ny\r\n');
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(cut(input, [5, 11, 12]), { objectMode: false }),
      toStoredLf(),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    assert.equal(Buffer.concat(out).toString('latin1'), 'A: b\n\nx\r\r\ny\n');
  });
});

describe('TOP limit', () => {
  const counts = [0, 1, 2, 3, 99_999_999];

  test('every chunk split gives the reference output', () => {
    for (const input of INPUTS) {
      const canonical = canonicalReference(input);
      for (const n of counts) {
        const expected = topReference(canonical, n);
        for (const chunks of splits(canonical)) {
          assert.deepEqual(runTop(chunks, n), expected, `n=${n} ${JSON.stringify(chunks.map((c) => c.toString('latin1')))}`);
        }
      }
    }
  });

  test('examples', () => {
    const m = canonicalReference(latin1('A: 1\nB: 2\n\nb1\nb2\nb3\n'));
    assert.equal(runTop([m], 0).toString('latin1'), 'A: 1\r\nB: 2\r\n\r\n');
    assert.equal(runTop([m], 1).toString('latin1'), 'A: 1\r\nB: 2\r\n\r\nb1\r\n');
    assert.equal(runTop([m], 99_999_999).toString('latin1'), m.toString('latin1'));
    const headersOnly = canonicalReference(latin1('A: 1\nB: 2'));
    assert.deepEqual(runTop([headersOnly], 0), headersOnly);
    assert.equal(runTop([latin1('\r\nbody\r\n')], 0).toString('latin1'), '\r\n');
  });

  test('property: streaming equals the whole-buffer reference', () => {
    fc.assert(
      fc.property(messageBytes, cutPoints, fc.nat({ max: 6 }), (input, cuts, n) => {
        const canonical = canonicalReference(input);
        assert.deepEqual(runTop(cut(canonical, cuts), n), topReference(canonical, n));
      }),
      { numRuns: 2000 },
    );
  });

  test('rejects a negative or fractional count', () => {
    assert.throws(() => new TopLimiter(-1), RangeError);
    assert.throws(() => new TopLimiter(1.5), RangeError);
  });

  test('limitToTop() ends its output and signals the limit', async () => {
    const input = canonicalReference(latin1('A: 1\n\nb1\nb2\nb3\n'));
    const transform = limitToTop(1);
    let limited = false;
    transform.on('limit', () => {
      limited = true;
    });
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(cut(input, [2, 7, 9, 13]), { objectMode: false }),
      transform,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    assert.equal(Buffer.concat(out).toString('latin1'), 'A: 1\r\n\r\nb1\r\n');
    assert.ok(limited);
  });
});

describe('messageStream()', () => {
  function countingSource(chunks: number): { source: Readable; pulled: () => number } {
    let pulled = 0;
    function* gen(): Generator<Buffer> {
      yield latin1('Subject: s\n\n');
      for (let i = 0; i < chunks; i++) {
        pulled++;
        yield latin1(`line ${i}\n`.repeat(1000));
      }
    }
    return { source: Readable.from(gen(), { objectMode: false }), pulled: () => pulled };
  }

  test('TOP stops reading the source and destroys it', async () => {
    const { source, pulled } = countingSource(1000);
    const out: Buffer[] = [];
    for await (const chunk of messageStream(source, { bodyLines: 2, canonicalize: true })) out.push(chunk as Buffer);
    assert.equal(Buffer.concat(out).toString('latin1'), 'Subject: s\r\n\r\nline 0\r\nline 0\r\n');
    assert.ok(pulled() < 5, `pulled ${pulled()} chunks`);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(source.destroyed);
  });

  test('the whole message, canonicalised, with the final CRLF', async () => {
    const input = latin1('A: 1\n\nbody\nlast');
    const out: Buffer[] = [];
    const source = Readable.from(cut(input, [1, 4, 6]), { objectMode: false });
    for await (const chunk of messageStream(source, { bodyLines: null, canonicalize: true })) out.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(out), canonicalReference(input));
  });

  test('destroying the output destroys the source', async () => {
    const { source } = countingSource(1000);
    const stream = messageStream(source, { bodyLines: null, canonicalize: true });
    for await (const _chunk of stream) break;
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(source.destroyed);
  });

  test('a source error reaches the reader', async () => {
    const source = new Readable({ read() {} });
    source.push(latin1('A: 1\n'));
    setTimeout(() => source.destroy(new Error('disk on fire')), 5);
    const stream = messageStream(source, { bodyLines: null, canonicalize: true });
    await assert.rejects(async () => {
      for await (const _chunk of stream);
    }, /disk on fire/);
  });

  test('backpressure: the source is paused while the reader is slow', async () => {
    const { source, pulled } = countingSource(1000);
    const stream = messageStream(source, { bodyLines: null, canonicalize: true, highWaterMark: 16 * 1024 });
    stream.once('data', () => stream.pause());
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(pulled() < 20, `pulled ${pulled()} chunks without a reader`);
    stream.destroy();
  });
});

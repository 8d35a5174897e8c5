import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LineReader, type LineEvent } from '../src/index.js';
import { splitAt } from './harness.js';

function drain(reader: LineReader): LineEvent[] {
  const out: LineEvent[] = [];
  for (let e = reader.next(); e !== undefined; e = reader.next()) out.push(e);
  return out;
}

function read(chunks: readonly (string | Buffer)[], limit = 16): LineEvent[] {
  const reader = new LineReader(limit);
  for (const c of chunks) reader.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  return drain(reader);
}

const line = (text: string): LineEvent => ({ kind: 'line', line: text });
const TOO_LONG: LineEvent = { kind: 'too-long' };

test('CRLF and bare LF both end a line; the CR before LF is dropped', () => {
  assert.deepEqual(read(['USER a\r\nPASS b\nQUIT\r\n']), [line('USER a'), line('PASS b'), line('QUIT')]);
});

test('empty lines are lines', () => {
  assert.deepEqual(read(['\r\n\n']), [line(''), line('')]);
});

test('a CR not followed by LF stays inside the line; only one CR before LF is dropped', () => {
  assert.deepEqual(read(['A\rB\r\n']), [line('A\rB')]);
  assert.deepEqual(read(['A\r\r\n']), [line('A\r')]);
  assert.deepEqual(read(['\rNOOP\r\n']), [line('\rNOOP')]);
});

test('a lone CR does not end a line', () => {
  const reader = new LineReader(16);
  reader.push(Buffer.from('STAT\r'));
  assert.equal(reader.next(), undefined);
  assert.equal(reader.pendingOctets, 5);
  reader.push(Buffer.from('\n'));
  assert.deepEqual(drain(reader), [line('STAT')]);
  assert.equal(reader.pendingOctets, 0);
});

test('a line split across pushes is one line, CR and LF in different pushes included', () => {
  assert.deepEqual(read(['US', 'ER a', '\r', '\nQU', 'IT\r\n']), [line('USER a'), line('QUIT')]);
});

test('a UTF-8 character split across pushes decodes whole', () => {
  const bytes = Buffer.from('PASS gr\u00fc\u00df\u20ac\r\n', 'utf8');
  for (let i = 0; i <= bytes.length; i++) assert.deepEqual(read(splitAt(bytes, [i]), 64), [line('PASS gr\u00fc\u00df\u20ac')]);
});

test('the caller may reuse its buffer after push', () => {
  const reader = new LineReader(16);
  const buf = Buffer.from('USER');
  reader.push(buf);
  buf.fill(0x58);
  reader.push(Buffer.from(' a\r\n'));
  assert.deepEqual(drain(reader), [line('USER a')]);
});

test('the limit counts the line without CR LF', () => {
  const limit = 8;
  assert.deepEqual(read(['x'.repeat(limit) + '\r\n'], limit), [line('x'.repeat(limit))]);
  assert.deepEqual(read(['x'.repeat(limit) + '\n'], limit), [line('x'.repeat(limit))]);
  assert.deepEqual(read(['x'.repeat(limit + 1) + '\r\n'], limit), [TOO_LONG]);
  assert.deepEqual(read(['x'.repeat(limit + 1) + '\n'], limit), [TOO_LONG]);
  assert.deepEqual(read(['x'.repeat(limit) + '\r\r\n'], limit), [TOO_LONG]);
});

test('an over-long line is reported once, at its end, and the next line still parses', () => {
  const limit = 8;
  const input = Buffer.from(`STAT\r\n${'y'.repeat(30)}\r\nNOOP\r\n${'z'.repeat(9)}\nQUIT\r\n`);
  const expected = [line('STAT'), TOO_LONG, line('NOOP'), TOO_LONG, line('QUIT')];
  assert.deepEqual(read([input], limit), expected);
  // The same at every single split and every pair of splits.
  for (let i = 0; i <= input.length; i++) {
    assert.deepEqual(read(splitAt(input, [i]), limit), expected, `split at ${i}`);
    for (let j = i; j <= input.length; j++) assert.deepEqual(read(splitAt(input, [i, j]), limit), expected, `split at ${i},${j}`);
  }
});

test('nothing is reported for an over-long line until its LF arrives', () => {
  const reader = new LineReader(8);
  reader.push(Buffer.from('x'.repeat(100)));
  assert.equal(reader.queued, 0);
  reader.push(Buffer.from('x'.repeat(100)));
  assert.equal(reader.queued, 0);
  reader.push(Buffer.from('\r\n'));
  assert.deepEqual(drain(reader), [TOO_LONG]);
});

test('memory stays bounded: a 10 MB line without LF never holds more than limit+1 octets', () => {
  const limit = 255;
  const reader = new LineReader(limit);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let max = 0;
  for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
    reader.push(chunk);
    max = Math.max(max, reader.pendingOctets);
    assert.equal(reader.queued, 0);
  }
  // Small pushes that creep up to the limit, too.
  const creeping = new LineReader(limit);
  for (let i = 0; i < 2 * limit; i++) {
    creeping.push(Buffer.from('B'));
    max = Math.max(max, creeping.pendingOctets);
  }
  assert.ok(max <= limit + 1, `held ${max} octets`);
  reader.push(Buffer.from('\r\nNOOP\r\n'));
  assert.deepEqual(drain(reader), [TOO_LONG, line('NOOP')]);
  assert.equal(reader.pendingOctets, 0);
});

test('reset() forgets partial lines, queued lines and an over-long line in progress', () => {
  const reader = new LineReader(8);
  reader.push(Buffer.from('STAT\r\nLIST\r\nUS'));
  assert.equal(reader.queued, 2);
  assert.equal(reader.pendingOctets, 2);
  reader.reset();
  assert.equal(reader.queued, 0);
  assert.equal(reader.pendingOctets, 0);
  reader.push(Buffer.from('ER a\r\n'));
  assert.deepEqual(drain(reader), [line('ER a')]);

  reader.push(Buffer.from('x'.repeat(20)));
  reader.reset();
  reader.push(Buffer.from('NOOP\r\n'));
  assert.deepEqual(drain(reader), [line('NOOP')]);
});

test('queued counts lines not yet taken', () => {
  const reader = new LineReader(8);
  reader.push(Buffer.from('A\r\nB\r\nC'));
  assert.equal(reader.queued, 2);
  reader.next();
  assert.equal(reader.queued, 1);
  reader.next();
  assert.equal(reader.queued, 0);
  assert.equal(reader.next(), undefined);
});

test('empty pushes are harmless', () => {
  assert.deepEqual(read(['', 'NO', '', 'OP\r', '', '\n', '']), [line('NOOP')]);
});

/** A plain reference: split on LF, drop one CR before it, too long if over the limit. */
function reference(data: Buffer, limit: number): { events: LineEvent[]; pending: number } {
  const events: LineEvent[] = [];
  let from = 0;
  for (let lf = data.indexOf(0x0a); lf !== -1; lf = data.indexOf(0x0a, from)) {
    let bytes = data.subarray(from, lf);
    if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, -1);
    events.push(bytes.length > limit ? TOO_LONG : line(bytes.toString('utf8')));
    from = lf + 1;
  }
  return { events, pending: data.length - from };
}

test('property: any bytes, any chunking, same events as the reference', () => {
  const byte = fc.constantFrom(0x0a, 0x0d, 0x41, 0x20, 0x2e, 0x00, 0xc3, 0xa9, 0xff);
  fc.assert(
    fc.property(
      fc.array(byte, { maxLength: 120 }).map((a) => Buffer.from(a)),
      fc.array(fc.nat(120), { maxLength: 8 }),
      fc.integer({ min: 0, max: 12 }),
      (data, cuts, limit) => {
        const reader = new LineReader(limit);
        for (const piece of splitAt(data, cuts)) {
          reader.push(piece);
          assert.ok(reader.pendingOctets <= limit + 1);
        }
        const ref = reference(data, limit);
        assert.deepEqual(drain(reader), ref.events);
        if (ref.pending <= limit + 1) assert.equal(reader.pendingOctets, ref.pending);
      },
    ),
    { numRuns: 1500 },
  );
});

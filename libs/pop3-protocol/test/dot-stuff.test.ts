import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DotStuffer, dotStuffAll } from '../src/index.js';
import { splitAt } from './harness.js';

const DOT = 0x2e;
const LF = 0x0a;

/**
 * Byte-at-a-time reference (RFC 1939 section 3): a `.` that starts a line gets another `.` in
 * front. For stuffing, a line starts at the beginning of the data and after every LF (a bare LF
 * included: never let a client that splits on LF see an early "."). The terminator is `.` CRLF
 * when the data is empty or ends with CRLF, else CRLF `.` CRLF, so the wire always carries
 * CRLF "." CRLF for clients that wait for exactly those octets.
 */
function reference(data: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const b = data[i] as number;
    if (b === DOT && (i === 0 || data[i - 1] === LF)) out.push(DOT);
    out.push(b);
  }
  const endsWithCrlf = data.length >= 2 && data[data.length - 2] === 0x0d && data[data.length - 1] === LF;
  const tail = data.length === 0 || endsWithCrlf ? '.\r\n' : '\r\n.\r\n';
  return Buffer.concat([Buffer.from(out), Buffer.from(tail, 'latin1')]);
}

function stuff(chunks: readonly Buffer[]): Buffer {
  const s = new DotStuffer();
  const out = chunks.map((c) => s.push(c));
  out.push(s.finish());
  return Buffer.concat(out);
}

const INPUTS: readonly string[] = [
  '',
  '.',
  '..',
  '.\r\n',
  'a\r\n.\r\nb\r\n',
  '\r\n.\r\n',
  '.leading\r\n..double\r\n...\r\nmid.dle\r\n',
  'no final newline',
  'ends with dot.',
  'line\r\n.',
  'line\r\n.\r\n',
  'a\n.b\n',
  'x\r\n\r\n.\r\n\r\n.',
];

test('known inputs', () => {
  const expected: Record<string, string> = {
    '': '.\r\n',
    '.': '..\r\n.\r\n',
    '.\r\n': '..\r\n.\r\n',
    'a\r\n.\r\nb\r\n': 'a\r\n..\r\nb\r\n.\r\n',
    'no final newline': 'no final newline\r\n.\r\n',
    'line\r\n.': 'line\r\n..\r\n.\r\n',
    'a\n.b\n': 'a\n..b\n\r\n.\r\n',
  };
  for (const [input, output] of Object.entries(expected)) {
    assert.equal(dotStuffAll(Buffer.from(input, 'latin1')).toString('latin1'), output, JSON.stringify(input));
  }
});

test('every split into two and three chunks gives the same bytes', () => {
  for (const text of INPUTS) {
    const data = Buffer.from(text, 'latin1');
    const want = reference(data);
    assert.deepEqual(stuff([data]), want, JSON.stringify(text));
    for (let i = 0; i <= data.length; i++) {
      for (let j = i; j <= data.length; j++) {
        assert.deepEqual(stuff(splitAt(data, [i, j])), want, `${JSON.stringify(text)} at ${i},${j}`);
      }
    }
    // One byte per chunk: every dot sits at a chunk boundary.
    assert.deepEqual(stuff([...data].map((b) => Buffer.from([b]))), want, `${JSON.stringify(text)} bytewise`);
  }
});

test('a dot right after a chunk that ended with LF is stuffed', () => {
  const s = new DotStuffer();
  assert.equal(s.push(Buffer.from('a\r\n')).toString(), 'a\r\n');
  assert.equal(s.push(Buffer.from('.b\r\n')).toString(), '..b\r\n');
  assert.equal(s.push(Buffer.from('c')).toString(), 'c');
  assert.equal(s.push(Buffer.from('.d\r\n')).toString(), '.d\r\n');
});

test('clean chunks come back as the very same Buffer', () => {
  const s = new DotStuffer();
  for (const text of ['Subject: x\r\n', '\r\n', 'body. with dots.\r\n', 'mid', '.line no, not at start\r\n', 'ends\r']) {
    const chunk = Buffer.from(text);
    assert.equal(s.push(chunk), chunk, JSON.stringify(text));
  }
  const empty = Buffer.alloc(0);
  assert.equal(new DotStuffer().push(empty), empty);
  // A chunk that needs stuffing comes back as a new buffer and leaves the input untouched.
  const dirty = Buffer.from('\r\n.x');
  const out = s.push(dirty);
  assert.notEqual(out, dirty);
  assert.equal(dirty.toString(), '\r\n.x');
  assert.equal(out.toString(), '\r\n..x');
});

test('finish() terminators', () => {
  const cases: readonly [readonly string[], string][] = [
    [[], '.\r\n'],
    [['abc\r\n'], '.\r\n'],
    [['abc'], '\r\n.\r\n'],
    [['abc\r'], '\r\n.\r\n'],
    [['abc\r\n', ''], '.\r\n'],
    [['abc', '\r\n'], '.\r\n'],
    [['abc\r\n', 'd'], '\r\n.\r\n'],
    [['abc\r', '\n'], '.\r\n'],
    [['abc\r', '\n', ''], '.\r\n'],
    [['\r', '\n'], '.\r\n'],
    [['\n'], '\r\n.\r\n'],
    // A bare LF is not CRLF: the terminator still arrives as CRLF "." CRLF.
    [['abc\n'], '\r\n.\r\n'],
    [['abc', '\n'], '\r\n.\r\n'],
  ];
  for (const [chunks, tail] of cases) {
    const s = new DotStuffer();
    for (const c of chunks) s.push(Buffer.from(c));
    assert.equal(s.finish().toString('latin1'), tail, JSON.stringify(chunks));
  }
});

test('the output ends with CRLF "." CRLF and never contains it earlier', () => {
  for (const text of INPUTS) {
    const out = dotStuffAll(Buffer.from(text, 'latin1'));
    const body = out.subarray(0, out.length - 3);
    assert.equal(body.indexOf('\r\n.\r\n'), -1, JSON.stringify(text));
    assert.ok(out.subarray(-5).toString() === '\r\n.\r\n' || out.equals(Buffer.from('.\r\n')), JSON.stringify(text));
  }
});

test('property: any chunking of any bytes matches the reference', () => {
  const byte = fc.constantFrom(DOT, LF, 0x0d, 0x61, 0x00);
  fc.assert(
    fc.property(
      fc.array(byte, { maxLength: 80 }).map((a) => Buffer.from(a)),
      fc.array(fc.nat(80), { maxLength: 10 }),
      (data, cuts) => {
        const chunks = splitAt(data, cuts);
        const s = new DotStuffer();
        const out: Buffer[] = [];
        for (const c of chunks) {
          const r = s.push(c);
          const needs = c.some((b, i) => b === DOT && (i > 0 ? c[i - 1] === LF : true));
          if (!needs) assert.equal(r, c, 'a chunk without line-start dots is passed through');
          out.push(r);
        }
        out.push(s.finish());
        assert.deepEqual(Buffer.concat(out), reference(data));
      },
    ),
    { numRuns: 2000 },
  );
});

test('unstuffing the output gives back the input (client view)', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('', '.', '..', 'a', '.a', 'a.', ' . '), { maxLength: 12 }), fc.boolean(), (lines, finalCrlf) => {
      const text = lines.join('\r\n') + (finalCrlf && lines.length > 0 ? '\r\n' : '');
      const wire = dotStuffAll(Buffer.from(text)).toString('latin1');
      // What a client does: split into CRLF lines, stop at ".", drop one leading dot.
      const got: string[] = [];
      for (const l of wire.split('\r\n')) {
        if (l === '.') break;
        got.push(l.startsWith('.') ? l.slice(1) : l);
      }
      const want = text === '' ? [] : text.replace(/\r\n$/, '').split('\r\n');
      assert.deepEqual(got, want);
    }),
    { numRuns: 1000 },
  );
});

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import wabtInit from 'wabt';
import { canonicalReference } from '@postern/mailstore/conformance';
import { DotStuffer, RETR_FRAME_INPUT, RETR_FRAME_WASM, RetrFramer, type FramedReply } from '../src/index.js';

const CR = 0x0d;
const LF = 0x0a;

/** The general path's bytes: the stores' canonical form, then DotStuffer and its terminator. */
function reference(stored: Buffer): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([s.push(canonicalReference(stored)), s.finish()]);
}

const canonicalLength = (stored: Buffer): number => canonicalReference(stored).length;

function framed(framer: RetrFramer, stored: Buffer, status = '+OK\r\n'): { bytes: Buffer; octets: number } {
  stored.copy(framer.input);
  const reply = framer.frame(status, stored.length);
  const bytes = Buffer.from(reply.buffer);
  reply.release();
  return { bytes, octets: reply.octets };
}

// Bytes where line ends and dots are common, so every branch is taken often.
const mailBytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc
    .array(fc.oneof(fc.constantFrom(CR, LF, 0x2e, 0x2e, LF), fc.integer({ min: 0, max: 255 })), { maxLength })
    .map((a) => Buffer.from(a));

describe('RetrFramer (WebAssembly)', () => {
  it('is what retr-frame.wat compiles to', async () => {
    const wabt = await wabtInit();
    const source = await readFile(new URL('../src/retr-frame.wat', import.meta.url), 'utf8');
    const module = wabt.parseWat('retr-frame.wat', source, { simd: true });
    const { buffer } = module.toBinary({});
    module.destroy();
    assert.equal(Buffer.from(buffer).toString('base64'), RETR_FRAME_WASM);
  });

  it('matches canonical encoding + dot-stuffing + terminator on edge cases', () => {
    const framer = new RetrFramer();
    const cases = [
      '',
      '.',
      '\n',
      '\r\n',
      '\r',
      'a',
      '.\n.\n',
      '..\r\n..',
      'x'.repeat(15) + '\n.',
      'x'.repeat(16) + '\n.',
      'x'.repeat(15) + '\r\n.',
      'x'.repeat(31) + '\n' + '.'.repeat(20),
      '\n'.repeat(40),
      '\r\n'.repeat(40),
      '\r'.repeat(17) + '\n',
      ('line one\n.dot\n\n..two\n').repeat(9),
      'no final line end',
    ];
    for (const text of cases) {
      const stored = Buffer.from(text, 'latin1');
      const { bytes, octets } = framed(framer, stored, '');
      assert.deepEqual(bytes, reference(stored), JSON.stringify(text));
      assert.equal(octets, canonicalLength(stored), JSON.stringify(text));
    }
  });

  it('matches on any bytes (CR, LF and dots anywhere, any length up to a few blocks)', () => {
    const framer = new RetrFramer();
    fc.assert(
      fc.property(mailBytes(200), (stored) => {
        const { bytes, octets } = framed(framer, stored, '');
        return bytes.equals(reference(stored)) && octets === canonicalLength(stored);
      }),
      { numRuns: 3000 },
    );
  });

  it('gives the same bytes when the message goes through in chunks split anywhere', () => {
    const framer = new RetrFramer();
    fc.assert(
      fc.property(mailBytes(200), fc.array(fc.nat(200), { maxLength: 6 }), (stored, cuts) => {
        const points = [...new Set(cuts.filter((c) => c < stored.length))].sort((a, b) => a - b);
        const parts: Buffer[] = [];
        let octets = 0;
        let previous = 0x0a;
        let from = 0;
        for (const to of [...points, stored.length]) {
          const chunk = stored.subarray(from, to);
          chunk.copy(framer.input);
          const reply = framer.frame(parts.length === 0 ? '+OK\r\n' : '', chunk.length, previous, to === stored.length);
          parts.push(Buffer.from(reply.buffer));
          reply.release();
          octets += reply.octets;
          if (chunk.length > 0) previous = chunk[chunk.length - 1] as number;
          from = to;
        }
        const expected = Buffer.concat([Buffer.from('+OK\r\n'), reference(stored)]);
        return Buffer.concat(parts).equals(expected) && octets === canonicalLength(stored);
      }),
      { numRuns: 2000 },
    );
  });

  it('puts the status line in front and handles the largest message', () => {
    const framer = new RetrFramer();
    // Worst case for the output size: every line is a dot after a bare LF.
    const stored = Buffer.alloc(RETR_FRAME_INPUT, '\n.');
    const status = `+OK ${canonicalLength(stored)} octets\r\n`;
    const { bytes, octets } = framed(framer, stored, status);
    assert.deepEqual(bytes, Buffer.concat([Buffer.from(status, 'latin1'), reference(stored)]));
    assert.equal(octets, canonicalLength(stored));
    assert.throws(() => framer.frame('', RETR_FRAME_INPUT + 1), RangeError);
  });

  it('keeps a reply intact until it is released, and copies out when every slot is taken', () => {
    const framer = new RetrFramer();
    const replies: FramedReply[] = [];
    for (let k = 0; k < 12; k++) {
      const stored = Buffer.from(`message ${k}\n`);
      stored.copy(framer.input);
      replies.push(framer.frame('+OK\r\n', stored.length));
    }
    // Twelve replies out at once (more than the slots): each still holds its own bytes.
    replies.forEach((r, k) => assert.equal(r.buffer.toString('latin1'), `+OK\r\nmessage ${k}\r\n.\r\n`));
    const starts = new Set(replies.map((r) => r.buffer.byteOffset + (r.buffer.buffer === replies[0]?.buffer.buffer ? 0 : 1e9)));
    assert.equal(starts.size, 12, 'no two replies share memory');
    for (const r of replies) r.release();
    // A second release of the same reply must not hand its slot out twice.
    replies[0]?.release();
    const a = framed(framer, Buffer.from('a\n'));
    const b = (() => {
      Buffer.from('b\n').copy(framer.input);
      return framer.frame('+OK\r\n', 2);
    })();
    const c = (() => {
      Buffer.from('c\n').copy(framer.input);
      return framer.frame('+OK\r\n', 2);
    })();
    assert.equal(a.bytes.toString(), '+OK\r\na\r\n.\r\n');
    assert.equal(b.buffer.toString(), '+OK\r\nb\r\n.\r\n');
    assert.equal(c.buffer.toString(), '+OK\r\nc\r\n.\r\n');
    assert.notEqual(b.buffer.byteOffset, c.buffer.byteOffset);
  });
});

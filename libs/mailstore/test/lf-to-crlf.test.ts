import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import wabtInit from 'wabt';
import { LF_TO_CRLF_WASM, lfToCrlf } from '../src/lf-to-crlf.js';

const reference = (b: Buffer): Buffer => Buffer.from(b.toString('latin1').replaceAll('\n', '\r\n'), 'latin1');

describe('lfToCrlf (WebAssembly)', () => {
  it('is what lf-to-crlf.wat compiles to', async () => {
    const wabt = await wabtInit();
    const source = await readFile(new URL('../src/lf-to-crlf.wat', import.meta.url), 'utf8');
    const module = wabt.parseWat('lf-to-crlf.wat', source);
    const { buffer } = module.toBinary({});
    module.destroy();
    assert.equal(Buffer.from(buffer).toString('base64'), LF_TO_CRLF_WASM);
  });

  it('matches the reference on edge cases', () => {
    for (const text of ['', 'a', '\n', '\n\n', 'abcdefg\n', 'abcdefgh\n', '12345678', '1234567\n12345678\n', 'x'.repeat(17) + '\n']) {
      const input = Buffer.from(text, 'latin1');
      assert.deepEqual(lfToCrlf(input), reference(input), JSON.stringify(text));
    }
  });

  it('matches the reference on any CR-free bytes, including chunks longer than one call', () => {
    const noCr = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a.map((b) => (b === 13 ? 10 : b))));
    fc.assert(fc.property(noCr, (input) => lfToCrlf(input).equals(reference(input))), { numRuns: 500 });
    const big = Buffer.alloc(300_000, 0x61);
    for (let i = 0; i < big.length; i += 61) big[i] = 10;
    assert.deepEqual(lfToCrlf(big), reference(big));
  });

  it('returns independent buffers (the module memory is reused)', () => {
    const a = lfToCrlf(Buffer.from('one\n'));
    const b = lfToCrlf(Buffer.from('two\n'));
    assert.equal(a.toString(), 'one\r\n');
    assert.equal(b.toString(), 'two\r\n');
  });
});

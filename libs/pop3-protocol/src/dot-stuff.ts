/**
 * Chunk-stateful dot-stuffing for multi-line POP3 responses (RFC 1939 section 3).
 * A `.` at the start of a line gets a second `.` in front; clean chunks pass through untouched.
 */
const DOT = 0x2e;
const LF = 0x0a;
const CR = 0x0d;

const LF_DOT = Buffer.from('\n.', 'latin1');
const TERMINATOR_AFTER_LINE = Buffer.from('.\r\n', 'latin1');
const TERMINATOR_MID_LINE = Buffer.from('\r\n.\r\n', 'latin1');

export class DotStuffer {
  #atLineStart = true;
  #lastByte = -1;
  /** The byte before #lastByte, so a CRLF split across chunks is still seen by finish(). */
  #prevByte = -1;

  /** Returns the stuffed bytes: the same buffer when nothing needed stuffing. */
  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    let positions: number[] | undefined;
    if (this.#atLineStart && chunk[0] === DOT) positions = [0];
    // Search for LF '.' pairs directly: most chunks have none, and one native search beats an
    // indexOf per line.
    let i = chunk.indexOf(LF_DOT);
    while (i !== -1) {
      (positions ??= []).push(i + 1);
      i = chunk.indexOf(LF_DOT, i + 2);
    }
    const last = chunk[chunk.length - 1] as number;
    this.#atLineStart = last === LF;
    this.#prevByte = chunk.length >= 2 ? (chunk[chunk.length - 2] as number) : this.#lastByte;
    this.#lastByte = last;
    if (positions === undefined) return chunk;
    const out = Buffer.allocUnsafe(chunk.length + positions.length);
    let src = 0;
    let dst = 0;
    for (const p of positions) {
      dst += chunk.copy(out, dst, src, p);
      out[dst++] = DOT;
      src = p;
    }
    chunk.copy(out, dst, src);
    return out;
  }

  /** The terminating line; adds the missing CRLF first when the data did not end with one. */
  finish(): Buffer {
    // A bare LF is not a line end for a client that waits for CRLF "." CRLF.
    const endedWithCrlf = this.#lastByte === LF && this.#prevByte === CR;
    const empty = this.#lastByte === -1;
    return endedWithCrlf || empty ? TERMINATOR_AFTER_LINE : TERMINATOR_MID_LINE;
  }
}

/** Whole-buffer reference, for tests and small replies. */
export function dotStuffAll(data: Buffer): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([s.push(data), s.finish()]);
}

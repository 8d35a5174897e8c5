/**
 * Chunk-stateful byte transforms between the forms a message takes:
 *
 * - input: whatever arrived (LF, CRLF or mixed line ends, maybe no final line end);
 * - canonical: every LF preceded by CR, and a non-empty message ends with CRLF. Its length is the
 *   POP3 LIST size; RETR sends exactly these bytes (then dot-stuffs them);
 * - stored LF form (Maildir on disk): the canonical form with each CRLF written as LF, except a
 *   CRLF that follows a bare CR, which stays CRLF so that decoding is exact.
 *
 * Every class keeps its state across chunk boundaries and returns the input buffer itself when
 * nothing has to change. Nothing here buffers more than one chunk.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { lfToCrlf } from './lf-to-crlf.js';

const CR = 0x0d;
const LF = 0x0a;
const EMPTY = Buffer.alloc(0);
const CRLF_BUF = Buffer.from('\r\n', 'latin1');
const LF_BUF = Buffer.from('\n', 'latin1');
const CR_CRLF_BUF = Buffer.from('\r\r\n', 'latin1');

/** Default chunk size for reading message files. */
export const MESSAGE_CHUNK_SIZE = 64 * 1024;

let positions = new Int32Array(8192);

/** A shared scratch array for up to `n` positions (used synchronously, never across awaits). */
function scratchPositions(n: number): Int32Array {
  if (positions.length < n) positions = new Int32Array(Math.max(n, positions.length * 2));
  return positions;
}

function asBuffer(chunk: Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Input -> canonical form. `push` each chunk, then `end()` once for the missing final CRLF. */
export class CanonicalEncoder {
  #last = -1;
  #size = 0;

  /** Canonical octets produced so far; the message's canonical size once `end()` was called. */
  get size(): number {
    return this.#size;
  }

  push(input: Uint8Array | string): Buffer {
    const chunk = asBuffer(input);
    const n = chunk.length;
    if (n === 0) return chunk;
    if (chunk.indexOf(CR) === -1 && !(this.#last === CR && chunk[0] === LF)) {
      // The common case (LF files from disk): every LF is bare (see lf-to-crlf.ts).
      this.#last = chunk[n - 1] as number;
      if (chunk.indexOf(LF) === -1) {
        this.#size += n;
        return chunk;
      }
      const out = lfToCrlf(chunk);
      this.#size += out.length;
      return out;
    }
    // Pass 1 records where a CR goes; pass 2 copies around those places.
    const at = scratchPositions(n);
    let bare = 0;
    let i = chunk.indexOf(LF);
    while (i !== -1) {
      if ((i === 0 ? this.#last : chunk[i - 1]) !== CR) at[bare++] = i;
      i = chunk.indexOf(LF, i + 1);
    }
    this.#last = chunk[n - 1] as number;
    this.#size += n + bare;
    if (bare === 0) return chunk;
    const out = Buffer.allocUnsafe(n + bare);
    let src = 0;
    let dst = 0;
    for (let k = 0; k < bare; k++) {
      const p = at[k] as number;
      // set(subarray) costs less per line than Buffer#copy.
      out.set(chunk.subarray(src, p), dst);
      dst += p - src;
      out[dst++] = CR;
      src = p;
    }
    out.set(chunk.subarray(src), dst);
    return out;
  }

  /** The final CRLF when a non-empty message did not end with one, else an empty buffer. */
  end(): Buffer {
    if (this.#last === -1 || this.#last === LF) return EMPTY;
    this.#last = LF;
    this.#size += 2;
    return CRLF_BUF;
  }
}

/** Counts the canonical size of an input without producing the bytes. */
export class CanonicalCounter {
  #last = -1;
  #size = 0;
  #ended = false;

  update(input: Uint8Array | string): void {
    const chunk = asBuffer(input);
    const n = chunk.length;
    if (n === 0) return;
    let bare = 0;
    let i = chunk.indexOf(LF);
    while (i !== -1) {
      if ((i === 0 ? this.#last : chunk[i - 1]) !== CR) bare++;
      i = chunk.indexOf(LF, i + 1);
    }
    this.#last = chunk[n - 1] as number;
    this.#size += n + bare;
  }

  /** The canonical size, including a final CRLF the input lacked. */
  end(): number {
    if (!this.#ended) {
      this.#ended = true;
      if (this.#last !== -1 && this.#last !== LF) this.#size += 2;
    }
    return this.#size;
  }
}

/** Canonical size of a whole stream, read chunk by chunk. */
export async function canonicalSize(source: AsyncIterable<Uint8Array | string>): Promise<number> {
  const counter = new CanonicalCounter();
  for await (const chunk of source) counter.update(chunk);
  return counter.end();
}

/**
 * Input (or canonical bytes) -> stored LF form, counting both sizes on the way.
 * Equal to encoding `canonical(input)`: a CRLF becomes LF unless the CR follows another CR
 * (`CR CR LF` is kept as is), a bare LF stays LF (it reads back as CRLF), a bare CR stays CR,
 * and a non-empty message gets a final line end.
 * A trailing CR of a chunk is held back until the next byte shows whether it ends a line.
 */
export class LfEncoder {
  #p1 = -1;
  #p2 = -1;
  #held = false;
  #canonical = 0;
  #stored = 0;

  /** Canonical octets of the input so far (final after `end()`): the LIST size. */
  get canonicalSize(): number {
    return this.#canonical;
  }

  /** Octets produced so far (final after `end()`): the size on disk. */
  get storedSize(): number {
    return this.#stored;
  }

  push(input: Uint8Array | string): Buffer {
    const chunk = asBuffer(input);
    const n = chunk.length;
    if (n === 0) return chunk;
    let emitHeld = false;
    if (this.#held) {
      // The held CR is #p1; it is dropped only when it starts a CRLF and does not follow a CR.
      emitHeld = !(chunk[0] === LF && this.#p2 !== CR);
      this.#held = false;
    }
    const endsWithCr = chunk[n - 1] === CR;
    // Pass 1: count bare LFs, record the CRs to drop (the CR of a CRLF that does not follow a CR).
    const at = scratchPositions(n);
    let bare = 0;
    let drops = 0;
    let i = chunk.indexOf(LF);
    while (i !== -1) {
      if (i === 0) {
        if (this.#p1 !== CR) bare++;
      } else if (chunk[i - 1] === CR) {
        if ((i > 1 ? chunk[i - 2] : this.#p1) !== CR) at[drops++] = i - 1;
      } else {
        bare++;
      }
      i = chunk.indexOf(LF, i + 1);
    }
    this.#p2 = n >= 2 ? (chunk[n - 2] as number) : this.#p1;
    this.#p1 = chunk[n - 1] as number;
    this.#held = endsWithCr;
    this.#canonical += n + bare;
    const outLength = n - drops - (endsWithCr ? 1 : 0) + (emitHeld ? 1 : 0);
    this.#stored += outLength;
    if (drops === 0 && !emitHeld && !endsWithCr) return chunk;
    // Pass 2: copy around the dropped CRs.
    const out = Buffer.allocUnsafe(outLength);
    let dst = 0;
    if (emitHeld) out[dst++] = CR;
    let src = 0;
    for (let k = 0; k < drops; k++) {
      const p = at[k] as number;
      out.set(chunk.subarray(src, p), dst);
      dst += p - src;
      src = p + 1;
    }
    out.set(chunk.subarray(src, endsWithCr ? n - 1 : n), dst);
    return out;
  }

  /** The held CR, if any, and the final line end a non-empty input lacked. */
  end(): Buffer {
    const held = this.#held;
    this.#held = false;
    if (this.#p1 === -1 || this.#p1 === LF) return EMPTY;
    this.#canonical += 2;
    // A final CRLF after a CR follows a CR, so it is stored as CRLF; otherwise as LF.
    const tail = held ? CR_CRLF_BUF : LF_BUF;
    this.#stored += tail.length;
    this.#p2 = this.#p1;
    this.#p1 = LF;
    return tail;
  }
}

/**
 * Cuts canonical bytes after the headers, the blank line and `bodyLines` body lines (POP3 TOP).
 * A message without a blank line, or with fewer body lines, passes whole.
 */
export class TopLimiter {
  #inBody = false;
  #remaining: number;
  #lineLength = 0;
  #last = -1;
  #done = false;

  constructor(bodyLines: number) {
    if (!Number.isInteger(bodyLines) || bodyLines < 0) {
      throw new RangeError(`bodyLines must be a non-negative integer, got ${bodyLines}`);
    }
    this.#remaining = bodyLines;
  }

  /** True once the limit was reached: later input is discarded and the source may be stopped. */
  get done(): boolean {
    return this.#done;
  }

  /** The part of `chunk` to pass on (the chunk itself when all of it passes). */
  push(input: Uint8Array | string): Buffer {
    const chunk = asBuffer(input);
    if (this.#done) return EMPTY;
    const n = chunk.length;
    if (n === 0) return chunk;
    let from = 0;
    let i = chunk.indexOf(LF);
    while (i !== -1) {
      const length = this.#lineLength + (i - from);
      this.#lineLength = 0;
      if (!this.#inBody) {
        const before = i > from ? chunk[i - 1] : this.#last;
        if (length === 0 || (length === 1 && before === CR)) {
          this.#inBody = true;
          if (this.#remaining === 0) return this.#cut(chunk, i + 1);
        }
      } else if (--this.#remaining === 0) {
        return this.#cut(chunk, i + 1);
      }
      from = i + 1;
      i = chunk.indexOf(LF, from);
    }
    this.#lineLength += n - from;
    this.#last = chunk[n - 1] as number;
    return chunk;
  }

  #cut(chunk: Buffer, end: number): Buffer {
    this.#done = true;
    return end === chunk.length ? chunk : chunk.subarray(0, end);
  }
}

/** A Transform around a chunk encoder (`push` per chunk, `end` once). */
function encoderTransform(encoder: { push(chunk: Buffer): Buffer; end(): Buffer }): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      const out = encoder.push(chunk);
      callback(null, out.length > 0 ? out : undefined);
    },
    flush(callback: TransformCallback) {
      const out = encoder.end();
      callback(null, out.length > 0 ? out : undefined);
    },
  });
}

/** Transform: input -> canonical form (CRLF line ends, final CRLF added). */
export function toCanonical(): Transform {
  return encoderTransform(new CanonicalEncoder());
}

/** Transform: input -> stored LF form (see `LfEncoder`). */
export function toStoredLf(): Transform {
  return encoderTransform(new LfEncoder());
}

/**
 * Transform over canonical bytes: headers, blank line, then `bodyLines` body lines, then the
 * readable side ends and the transform emits `'limit'`. Later input is accepted and discarded,
 * so a source piped into it is still read to its end; to stop reading the source early, destroy
 * it on `'limit'` outside a pipeline, or use `messageStream()`, which does that.
 */
export function limitToTop(bodyLines: number): Transform {
  const limiter = new TopLimiter(bodyLines);
  let ended = false;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      if (ended) return callback();
      const out = limiter.push(chunk);
      if (out.length > 0) this.push(out);
      if (limiter.done) {
        ended = true;
        this.push(null);
        this.emit('limit');
      }
      callback();
    },
  });
}

export interface MessageStreamOptions {
  /** `null` for the whole message, a number for TOP. */
  readonly bodyLines: number | null;
  /** True when the source holds stored/input bytes that need canonicalising (Maildir files). */
  readonly canonicalize: boolean;
  readonly highWaterMark?: number;
  /**
   * Network sources: fail with a temporary error when the source sends nothing for this long
   * while the reader is waiting for data (a dead or partitioned server that never closes the
   * connection). Time the reader spends not reading (a slow client) does not count.
   */
  readonly stallTimeoutMs?: number;
}

/**
 * The readable a store hands to RETR/TOP: `source` canonicalised and limited, with backpressure.
 * It owns `source`: once the TOP limit is reached it ends and destroys `source` (so a file stops
 * being read); destroying the returned stream destroys `source`; an error of `source` destroys
 * the returned stream with that error.
 */
export function messageStream(source: Readable, options: MessageStreamOptions): Readable {
  return new MessageStream(source, options);
}

class MessageStream extends Readable {
  readonly #source: Readable;
  readonly #encoder: CanonicalEncoder | null;
  readonly #limiter: TopLimiter | null;
  #finished = false;
  readonly #stallTimeoutMs: number;
  #stallTimer: NodeJS.Timeout | null = null;

  constructor(source: Readable, options: MessageStreamOptions) {
    super({ highWaterMark: options.highWaterMark ?? MESSAGE_CHUNK_SIZE });
    this.#source = source;
    this.#stallTimeoutMs = options.stallTimeoutMs ?? 0;
    this.#encoder = options.canonicalize ? new CanonicalEncoder() : null;
    this.#limiter = options.bodyLines === null ? null : new TopLimiter(options.bodyLines);
    source.on('data', this.#onData);
    source.on('end', this.#onEnd);
    source.on('error', this.#onError);
    source.on('close', this.#onClose);
    source.pause();
  }

  override _read(): void {
    if (this.#finished) return;
    this.#source.resume();
    this.#armStallTimer();
  }

  /** While the source flows and nothing arrives, count down to a stall error. */
  #armStallTimer(): void {
    if (this.#stallTimeoutMs <= 0 || this.#stallTimer !== null) return;
    this.#stallTimer = setTimeout(() => {
      this.#stallTimer = null;
      const error = Object.assign(new Error(`message source sent nothing for ${this.#stallTimeoutMs} ms`), { code: 'ETIMEDOUT', temporary: true });
      this.#onError(error);
    }, this.#stallTimeoutMs);
  }

  #clearStallTimer(): void {
    if (this.#stallTimer === null) return;
    clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#clearStallTimer();
    this.#detach();
    if (!this.#source.destroyed) this.#source.destroy();
    callback(error);
  }

  #emit(bytes: Buffer): boolean {
    let out = this.#encoder === null ? bytes : this.#encoder.push(bytes);
    if (this.#limiter !== null) out = this.#limiter.push(out);
    return out.length > 0 ? this.push(out) : true;
  }

  readonly #onData = (chunk: Buffer | string): void => {
    if (this.#finished) return;
    this.#clearStallTimer();
    const more = this.#emit(asBuffer(chunk));
    if (this.#limiter?.done) {
      this.#finish();
      this.#source.destroy();
    } else if (!more) {
      this.#source.pause();
    } else {
      this.#armStallTimer();
    }
  };

  readonly #onEnd = (): void => {
    if (this.#finished) return;
    if (this.#encoder !== null) {
      const tail = this.#encoder.end();
      const out = this.#limiter === null ? tail : this.#limiter.push(tail);
      if (out.length > 0) this.push(out);
    }
    this.#finish();
  };

  readonly #onError = (error: Error): void => {
    if (this.#finished) return;
    this.#detach();
    this.destroy(error);
  };

  readonly #onClose = (): void => {
    if (this.#finished || this.destroyed) return;
    // Closed without 'end' or 'error': someone destroyed the source under us.
    const error = Object.assign(new Error('message source closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    this.#onError(error);
  };

  #finish(): void {
    this.#finished = true;
    this.#clearStallTimer();
    this.#detach();
    this.push(null);
  }

  #detach(): void {
    this.#clearStallTimer();
    const source = this.#source;
    source.off('data', this.#onData);
    source.off('end', this.#onEnd);
    source.off('error', this.#onError);
    source.off('close', this.#onClose);
    // Keep an error after detaching from crashing the process.
    if (source.listenerCount('error') === 0) source.on('error', () => {});
  }
}

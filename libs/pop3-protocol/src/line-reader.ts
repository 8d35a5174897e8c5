/**
 * Resumable line splitter for POP3 command input. Bytes arrive in arbitrary segments; a line
 * is everything up to LF (a preceding CR is dropped). Lines longer than the hard limit are
 * discarded up to their LF and reported as `too-long`, so memory per connection stays bounded.
 */
export type LineEvent =
  | { readonly kind: 'line'; readonly line: string }
  | { readonly kind: 'too-long' };

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  readonly #hardLimit: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Inside an over-long line: drop bytes until the next LF. */
  #discarding = false;
  #queue: LineEvent[] = [];
  #head = 0;

  /** @param hardLimit most octets of one line (without CR LF) kept in memory. */
  constructor(hardLimit: number) {
    this.#hardLimit = hardLimit;
  }

  /** Octets held that do not yet form a complete line. */
  get pendingOctets(): number {
    return this.#buffered;
  }

  /** Lines parsed and not yet taken. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const lf = chunk.indexOf(LF, start);
      const end = lf === -1 ? chunk.length : lf;
      if (this.#discarding) {
        if (lf !== -1) {
          this.#discarding = false;
          this.#queue.push({ kind: 'too-long' });
        }
      } else {
        const piece = chunk.subarray(start, end);
        if (this.#buffered + piece.length > this.#hardLimit + 1) {
          // +1 leaves room for the CR that precedes LF.
          this.#chunks = [];
          this.#buffered = 0;
          if (lf === -1) this.#discarding = true;
          else this.#queue.push({ kind: 'too-long' });
        } else if (lf === -1) {
          if (piece.length > 0) {
            // Copy: the caller may reuse its buffer.
            this.#chunks.push(Buffer.from(piece));
            this.#buffered += piece.length;
          }
        } else {
          this.#queue.push(this.#finishLine(piece));
        }
      }
      if (lf === -1) break;
      start = lf + 1;
    }
  }

  #finishLine(last: Buffer): LineEvent {
    let bytes = this.#chunks.length === 0 ? last : Buffer.concat([...this.#chunks, last]);
    this.#chunks = [];
    this.#buffered = 0;
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes.length > this.#hardLimit) return { kind: 'too-long' };
    return { kind: 'line', line: bytes.toString('utf8') };
  }

  /** Take the next complete line event, if any. */
  next(): LineEvent | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const event = this.#queue[this.#head++];
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
    return event;
  }

  /** Forget everything buffered (used when TLS starts: nothing sent in clear may be acted on). */
  reset(): void {
    this.#chunks = [];
    this.#buffered = 0;
    this.#discarding = false;
    this.#queue = [];
    this.#head = 0;
  }
}

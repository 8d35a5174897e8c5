/**
 * Pulls POP3 command lines from a socket one at a time. Reading pauses while a line waits to
 * be handled, so a client that pipelines cannot make the server buffer more than one segment.
 */
import type { Duplex } from 'node:stream';
import { LineReader, type LineEvent } from '@postern/pop3-protocol';

export type Pulled = LineEvent | { readonly kind: 'end' } | { readonly kind: 'timeout' } | { readonly kind: 'interrupt' };

export class LineSource {
  readonly reader: LineReader;
  #socket: Duplex | null = null;
  #ended = false;
  #wake: (() => void) | null = null;
  #interrupted = false;

  constructor(hardLimit: number) {
    this.reader = new LineReader(hardLimit);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    if (this.reader.queued > 0) {
      this.#socket?.pause();
      this.#deliver();
    }
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#deliver();
  };

  /** Read from `socket` from now on (after STLS: the TLS socket), forgetting anything buffered. */
  attach(socket: Duplex): void {
    this.detach();
    this.reader.reset();
    this.#socket = socket;
    this.#ended = false;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onEnd);
    socket.pause();
  }

  detach(): void {
    const s = this.#socket;
    if (!s) return;
    s.off('data', this.#onData);
    s.off('end', this.#onEnd);
    s.off('close', this.#onEnd);
    s.off('error', this.#onEnd);
    s.pause();
    this.#socket = null;
  }

  /** Wake a pending `next()` with `interrupt` (lease lost, shutdown). */
  interrupt(): void {
    this.#interrupted = true;
    this.#deliver();
  }

  #deliver(): void {
    this.#wake?.();
  }

  #take(): Pulled | undefined {
    if (this.#interrupted) {
      this.#interrupted = false;
      return { kind: 'interrupt' };
    }
    const event = this.reader.next();
    if (event) return event;
    if (this.#ended) return { kind: 'end' };
    return undefined;
  }

  /** The next line event; `timeout` after `timeoutMs` without a complete line. */
  async next(timeoutMs: number): Promise<Pulled> {
    const ready = this.#take();
    if (ready) return ready;
    const socket = this.#socket;
    if (!socket) return { kind: 'end' };
    return new Promise<Pulled>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        socket.pause();
        resolve({ kind: 'timeout' });
      }, timeoutMs);
      this.#wake = () => {
        const event = this.#take();
        if (!event) return; // nothing complete yet: keep waiting
        clearTimeout(timer);
        this.#wake = null;
        resolve(event);
      };
      socket.resume();
    });
  }
}

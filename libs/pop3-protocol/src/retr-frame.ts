/**
 * A RETR reply in one buffer and one pass over the message: status line, the message with
 * canonical line ends and dot-stuffed, the terminator; longer messages in chunks of up to
 * `RETR_FRAME_INPUT` octets. For stores that can read synchronously (Maildir files): the store
 * copies stored bytes into `input`, `frame()` writes the output into one of a few slots of the
 * same WebAssembly memory, and the caller hands that slot to the socket and gives it back when
 * the write is done. No allocation, no stream and no copy besides the read itself and the
 * encoding pass.
 *
 * The same bytes as the general path (the store's canonical encoder, then DotStuffer, then its
 * terminator): test/retr-frame.test.ts checks this on arbitrary input, and that the module is
 * what retr-frame.wat compiles to.
 */
export const RETR_FRAME_WASM =
  'AGFzbQEAAAABCQFgBH9/f38BfwIPAQNlbnYGbWVtb3J5AgABAwIBAAcJAQVmcmFtZQAACvkDAfYDAQd/IAIhBSABQQBLIABBAWstAABBCkZxBEAgAC0AAEEuRgRAIAVBLjoAACAFQQFqIQVBASEJCwsCQANAIARBEGogAUsNASAAIARq/QAEAEEK/Q/9I/1kIQYgBCEHAkADQCAGRQ0BIAQgBmhqIQggBSAAIAdq/QAEAP0LBAAgBSAIIAdraiEFIAAgCGpBAWstAABBDUcEQCAFQQ06AAAgBUEBaiEFCyAFQQo6AAAgBUEBaiEFIAhBAWohByAHIAFJBEAgACAHai0AAEEuRgRAIAVBLjoAACAFQQFqIQUgCUEBaiEJCwsgBiAGQQFrcSEGDAALCyAFIAAgB2r9AAQA/QsEACAFIARBEGogB2tqIQUgBEEQaiEEDAALCwJAA0AgBCABTw0BIAAgBGotAAAhCiAEQQFqIQQgCkEKRgRAIAAgBGpBAmstAABBDUcEQCAFQQ06AAAgBUEBaiEFCyAFQQo6AAAgBUEBaiEFIAQgAUkEQCAAIARqLQAAQS5GBEAgBUEuOgAAIAVBAWohBSAJQQFqIQkLCwwBCyAFIAo6AAAgBUEBaiEFDAALCyADBEAgACABakEBay0AAEEKRwRAIAVBjRQ7AQAgBUECaiEFCyAFQa4aOwEAIAVBAmpBCjoAACAFQQNqIQULQQAgCTYCACAFIAJrCw==';

// The slice of the WebAssembly API used here (Node has it; @types/node 20 does not declare it).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: Record<string, Record<string, unknown>>);
    readonly exports: unknown;
  }
  class Memory {
    constructor(descriptor: { initial: number; maximum?: number });
    readonly buffer: ArrayBuffer;
  }
}

/** Largest stored message (octets) that goes through the one-buffer path; longer ones stream. */
export const RETR_FRAME_INPUT = 128 * 1024;

const PAGE = 64 * 1024;
/** Address 0 holds the count of dots added; the input starts after a gap (the module reads one byte before it). */
const INPUT_AT = 64;
/** The module may read 32 octets past the input. */
const INPUT_SLACK = 32;
/** Room for the status line in front of the body. */
const STATUS_ROOM = 64;
/** The longest output of RETR_FRAME_INPUT octets, with the slack the module's 16-byte stores need. */
const SLOT_SIZE = STATUS_ROOM + 2 * RETR_FRAME_INPUT + 5 + 16;
/** Output slots: one per reply still being written; last freed, first used, so one or two are touched in practice. */
const SLOTS = 8;

interface Exports {
  frame(input: number, length: number, output: number, last: number): number;
}

export interface FramedReply {
  /** Status line, body and terminator. Valid until `release()`. */
  readonly buffer: Buffer;
  /** Canonical octets of the message (before dot-stuffing). */
  readonly octets: number;
  /** Gives the buffer back; call once, when the socket has written it (the write callback). */
  readonly release: () => void;
}

export class RetrFramer {
  readonly #frame: Exports['frame'];
  readonly #memory: Buffer;
  readonly #slotsAt: number;
  readonly #free: number[] = [];
  /** 1 while a slot's reply is out (a second release of the same reply changes nothing). */
  readonly #busy = new Uint8Array(SLOTS);
  readonly #release: Array<() => void> = [];
  /** Where the caller puts the stored message before `frame()` (RETR_FRAME_INPUT + 1 octets, so a read can see a grown file). */
  readonly input: Buffer;

  constructor() {
    const slotsAt = Math.ceil((INPUT_AT + RETR_FRAME_INPUT + 1 + INPUT_SLACK) / 64) * 64;
    // One more slot than SLOTS: the spare one holds a reply that is copied out at once.
    const bytes = slotsAt + (SLOTS + 1) * SLOT_SIZE;
    const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE) });
    const module = new WebAssembly.Module(Buffer.from(RETR_FRAME_WASM, 'base64'));
    this.#frame = (new WebAssembly.Instance(module, { env: { memory } }).exports as Exports).frame;
    // The memory never grows, so these views stay valid (and so do buffers handed to sockets).
    this.#memory = Buffer.from(memory.buffer);
    this.input = this.#memory.subarray(INPUT_AT, INPUT_AT + RETR_FRAME_INPUT + 1);
    this.#slotsAt = slotsAt;
    for (let k = SLOTS - 1; k >= 0; k--) {
      this.#release[k] = () => {
        if (this.#busy[k] === 0) return;
        this.#busy[k] = 0;
        this.#free.push(k);
      };
      this.#free.push(k);
    }
  }

  /**
   * Output for the `length` stored octets now in `input`: `status` (a line with its CRLF,
   * latin1, or '' after the first chunk), the chunk canonical and dot-stuffed, and with `last`
   * the terminator. `previous` is the message's octet before this chunk: LF (0x0a) for the first.
   * Messages longer than RETR_FRAME_INPUT go through in several calls.
   */
  frame(status: string, length: number, previous = 0x0a, last = true): FramedReply {
    if (length < 0 || length > RETR_FRAME_INPUT) throw new RangeError(`a framed message holds at most ${RETR_FRAME_INPUT} octets, not ${length}`);
    if (status.length > STATUS_ROOM) throw new RangeError('status line too long');
    const slot = this.#free.pop();
    const base = this.#slotsAt + (slot ?? SLOTS) * SLOT_SIZE;
    const body = base + STATUS_ROOM;
    const start = body - status.length;
    this.#memory.write(status, start, 'latin1');
    this.#memory[INPUT_AT - 1] = previous;
    const n = this.#frame(INPUT_AT, length, body, last ? 1 : 0);
    const dots = this.#memory.readUInt32LE(0);
    const octets = n - dots - (last ? 3 : 0);
    const end = body + n;
    if (slot === undefined) {
      // Every slot is still being written (clients that stopped reading): copy this one out.
      return { buffer: Buffer.from(this.#memory.subarray(start, end)), octets, release: noop };
    }
    this.#busy[slot] = 1;
    return { buffer: this.#memory.subarray(start, end), octets, release: this.#release[slot] as () => void };
  }
}

function noop(): void {}

let shared: RetrFramer | null = null;

/** The process's framer (its memory is about 2.4 MB of address space, touched as used). */
export function retrFramer(): RetrFramer {
  shared ??= new RetrFramer();
  return shared;
}

/**
 * Reading a new password: from a terminal, twice and without echo; otherwise the first line
 * of standard input. Never from the command line, where `ps` and shell history would see it.
 */
import type { Readable, Writable } from 'node:stream';

/** Standard input as the CLI sees it: a stream that may be a terminal. */
export type PasswordInput = Readable & {
  readonly isTTY?: boolean;
  readonly isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
};

/** Ctrl-C at a prompt. */
export class Interrupted extends Error {
  override readonly name = 'Interrupted';
}

/** Longest first line accepted from a pipe. */
const MAX_LINE_BYTES = 4096;

/** The first line of `input` (without CR/LF), or null when it ends before any byte. */
export async function readFirstLine(input: Readable): Promise<string | null> {
  const chunks: Buffer[] = [];
  let total = 0;
  let sawData = false;
  for await (const chunk of input) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
    sawData = true;
    const nl = buf.indexOf(0x0a);
    chunks.push(nl >= 0 ? buf.subarray(0, nl) : buf);
    total += nl >= 0 ? nl : buf.length;
    if (total > MAX_LINE_BYTES) throw new Error(`password line longer than ${MAX_LINE_BYTES} bytes`);
    if (nl >= 0) break;
  }
  if (!sawData) return null;
  const line = Buffer.concat(chunks).toString('utf8');
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/**
 * Lines typed on a terminal in raw mode, echoing nothing. Keystrokes typed ahead (both
 * entries at once) are kept for the next line; the terminal stays in raw mode across prompts
 * so nothing typed between them is echoed either.
 */
class HiddenLineReader {
  private pending = '';
  private waiter: { resolve: (line: string) => void; reject: (e: Error) => void } | null = null;
  private readonly wasRaw: boolean;
  private ended = false;

  constructor(
    private readonly input: PasswordInput,
    private readonly output: Writable,
  ) {
    this.wasRaw = input.isRaw ?? false;
    input.setRawMode?.(true);
    input.setEncoding('utf8');
    input.on('data', this.onData);
    input.on('end', this.onEnd);
    input.resume();
  }

  /** Show `prompt`, then resolve with the next line. */
  line(prompt: string): Promise<string> {
    this.output.write(prompt);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.drain();
    });
  }

  close(): void {
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.input.setRawMode?.(this.wasRaw);
    this.input.pause();
  }

  private readonly onData = (text: string): void => {
    this.pending += text;
    this.drain();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.drain();
  };

  private drain(): void {
    if (this.waiter === null) return;
    let value = '';
    let i = 0;
    const chars = Array.from(this.pending);
    for (; i < chars.length; i++) {
      const ch = chars[i]!;
      if (ch === '\r' || ch === '\n') return this.finish(chars.slice(i + 1).join(''), value);
      if (ch === '\u0003') return this.fail(new Interrupted('interrupted')); // Ctrl-C
      if (ch === '\u0004' && value === '') return this.finish(chars.slice(i + 1).join(''), ''); // Ctrl-D
      if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
      else if (ch === '\u0015') value = ''; // Ctrl-U
      else if (ch >= ' ') value += ch;
    }
    if (this.ended) this.finish('', value);
  }

  private finish(rest: string, value: string): void {
    this.pending = rest;
    const w = this.waiter!;
    this.waiter = null;
    this.output.write('\n');
    w.resolve(value);
  }

  private fail(e: Error): void {
    this.pending = '';
    const w = this.waiter!;
    this.waiter = null;
    this.output.write('\n');
    w.reject(e);
  }
}

/**
 * A new password: prompted twice without echo on a terminal (mismatch is an error), else the
 * first line of the input. Null when a pipe ends before any byte.
 */
export async function readPassword(input: PasswordInput, prompts: Writable): Promise<string | null> {
  if (input.isTTY) {
    const reader = new HiddenLineReader(input, prompts);
    try {
      const first = await reader.line('New password: ');
      if (first === '') return '';
      const second = await reader.line('Retype new password: ');
      if (first !== second) throw new Error('passwords do not match');
      return first;
    } finally {
      reader.close();
    }
  }
  return readFirstLine(input);
}

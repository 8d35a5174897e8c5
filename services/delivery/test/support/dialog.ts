/** A raw SMTP/LMTP client for tests: one command at a time, every reply as sent. */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

export interface Reply {
  readonly code: number;
  /** The text of the last line (after the code and the separator). */
  readonly text: string;
  /** Every line, as received. */
  readonly lines: readonly string[];
}

export class Dialog {
  readonly #socket: Socket;
  #buffer = '';
  #lines: string[] = [];
  readonly #ready: Reply[] = [];
  readonly #waiters: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  #failure: Error | null = null;

  private constructor(socket: Socket) {
    this.#socket = socket;
    const fail = (e: Error): void => {
      this.#failure ??= e;
      for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      let i: number;
      while ((i = this.#buffer.indexOf('\r\n')) !== -1) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 2);
        this.#lines.push(line);
        if (line[3] === '-') continue;
        const reply = { code: Number(line.slice(0, 3)), text: line.slice(4), lines: this.#lines };
        this.#lines = [];
        const w = this.#waiters.shift();
        if (w) w.resolve(reply);
        else this.#ready.push(reply);
      }
    });
  }

  /** Connects and reads the greeting, then says LHLO/EHLO. */
  static async open(port: number, hello: 'LHLO' | 'EHLO'): Promise<{ dialog: Dialog; greeting: Reply; hello: Reply }> {
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const dialog = new Dialog(socket);
    const greeting = await dialog.reply();
    return { dialog, greeting, hello: await dialog.send(`${hello} client.test`) };
  }

  reply(): Promise<Reply> {
    const r = this.#ready.shift();
    if (r) return Promise.resolve(r);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  send(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** MAIL, RCPT for each; the RCPT replies. */
  async envelope(from: string, recipients: readonly string[]): Promise<Reply[]> {
    const mail = await this.send(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) throw new Error(`MAIL FROM: ${mail.lines.join(' | ')}`);
    const out: Reply[] = [];
    for (const r of recipients) out.push(await this.send(`RCPT TO:<${r}>`));
    return out;
  }

  async close(): Promise<void> {
    if (this.#socket.destroyed) return;
    this.#socket.end('QUIT\r\n');
    await once(this.#socket, 'close');
  }
}

/** A CRLF message of exactly `size` octets (at least 40), body lines of `x`. */
export function messageOf(size: number, tag = 'test'): Buffer {
  const head = `Subject: ${tag}\r\nX-Size: ${String(size).padStart(8, '0')}\r\n\r\n`;
  let left = size - head.length;
  if (left < 2) throw new RangeError(`a message of ${size} octets is too small`);
  let body = '';
  for (; left > 80; left -= 78) body += `${'x'.repeat(76)}\r\n`;
  body += `${'x'.repeat(left - 2)}\r\n`;
  const bytes = Buffer.from(head + body, 'latin1');
  if (bytes.length !== size) throw new Error(`messageOf(${size}) made ${bytes.length} octets`);
  return bytes;
}

/** The DATA payload for CRLF message bytes: dot-stuffed, with the terminating line. */
export function dataOf(message: Buffer): Buffer {
  const text = message.toString('latin1');
  return Buffer.from((text.startsWith('.') ? '.' : '') + text.replaceAll('\r\n.', '\r\n..') + '.\r\n', 'latin1');
}

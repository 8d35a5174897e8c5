/** Minimal LMTP client for tests: exact bytes in, per-recipient replies out. */
import { connect, type Socket } from 'node:net';

export interface LmtpReply {
  readonly code: number;
  readonly text: string;
}

class ReplyReader {
  #buffer = '';
  #waiters: Array<{ resolve: (r: LmtpReply) => void; reject: (e: Error) => void }> = [];
  #ready: LmtpReply[] = [];
  #lines: string[] = [];
  #failure: Error | null = null;
  constructor(socket: Socket) {
    const fail = (e: Error): void => {
      this.#failure ??= e;
      for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('LMTP connection closed')));
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      let i: number;
      while ((i = this.#buffer.indexOf('\r\n')) !== -1) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 2);
        this.#lines.push(line.slice(4));
        if (line[3] !== '-') {
          const reply = { code: Number(line.slice(0, 3)), text: this.#lines.join('\n') };
          this.#lines = [];
          const w = this.#waiters.shift();
          if (w) w.resolve(reply);
          else this.#ready.push(reply);
        }
      }
    });
  }
  next(): Promise<LmtpReply> {
    const r = this.#ready.shift();
    if (r) return Promise.resolve(r);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }
}

/** SMTP dot-stuffing of message bytes that already have CRLF line ends. */
export function smtpStuff(data: Buffer): Buffer {
  const text = data.toString('latin1');
  const stuffed = (text.startsWith('.') ? '.' : '') + text.replaceAll('\r\n.', '\r\n..');
  const end = stuffed.endsWith('\r\n') ? '.\r\n' : '\r\n.\r\n';
  return Buffer.from(stuffed + end, 'latin1');
}

export interface LmtpResult {
  readonly rcpt: LmtpReply[];
  /** One per accepted recipient, in order (empty when DATA was not reached). */
  readonly data: LmtpReply[];
}

export interface LmtpSendOptions {
  /** Send these bytes after DATA verbatim (already stuffed, with the terminating `.` line). */
  readonly rawData?: Buffer;
}

export async function lmtpSend(
  port: number,
  from: string,
  recipients: readonly string[],
  message: Buffer,
  options: LmtpSendOptions = {},
): Promise<LmtpResult> {
  const socket = connect({ host: '127.0.0.1', port });
  const reader = new ReplyReader(socket);
  const send = (line: string): Promise<LmtpReply> => {
    socket.write(`${line}\r\n`);
    return reader.next();
  };
  try {
    const greeting = await reader.next();
    if (greeting.code !== 220) throw new Error(`LMTP greeting: ${greeting.code} ${greeting.text}`);
    const lhlo = await send('LHLO test.example');
    if (lhlo.code !== 250) throw new Error(`LHLO: ${lhlo.code}`);
    const mail = await send(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) throw new Error(`MAIL: ${mail.code} ${mail.text}`);
    const rcpt: LmtpReply[] = [];
    for (const r of recipients) rcpt.push(await send(`RCPT TO:<${r}>`));
    const accepted = rcpt.filter((r) => r.code === 250).length;
    if (accepted === 0) {
      await send('QUIT');
      return { rcpt, data: [] };
    }
    const go = await send('DATA');
    if (go.code !== 354) throw new Error(`DATA: ${go.code} ${go.text}`);
    socket.write(options.rawData ?? smtpStuff(message));
    const data: LmtpReply[] = [];
    for (let i = 0; i < accepted; i++) data.push(await reader.next());
    await send('QUIT');
    return { rcpt, data };
  } finally {
    socket.end();
  }
}

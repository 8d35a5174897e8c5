/**
 * A raw POP3 client for tests: exact bytes in both directions, one reply at a time, or the whole
 * stream as received. Lines are Buffers (latin1 when shown as text) so 8-bit data survives.
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

const CRLF = Buffer.from('\r\n');

export interface MultiLineReply {
  /** The status line, without CRLF. */
  readonly status: string;
  /** For +OK: the data lines un-stuffed, each ending in CRLF (what the server meant to send). */
  readonly body: Buffer;
}

export interface ConnectOptions {
  /** Implicit TLS, trusting this CA file's contents. */
  readonly tlsCa?: Buffer;
}

export class Pop3Client {
  socket: Socket | TLSSocket;
  /** Every byte received, in order (across STLS only the decrypted bytes). */
  readonly received: Buffer[] = [];
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Promise<void>;
  greeting = '';
  #lines: Buffer[] = [];
  #partial: Buffer[] = [];
  #wake: (() => void) | null = null;
  #ended = false;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.#attach(socket);
  }

  static async connect(port: number, options: ConnectOptions = {}): Promise<Pop3Client> {
    const socket = options.tlsCa
      ? tlsConnect({ host: '127.0.0.1', port, ca: options.tlsCa })
      : netConnect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const client = new Pop3Client(socket);
    socket.on('error', () => undefined);
    client.greeting = await client.line();
    return client;
  }

  /** Opens a connection and only waits for it to be established (no greeting read). */
  static async open(port: number): Promise<Pop3Client> {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const client = new Pop3Client(socket);
    await once(socket, 'connect');
    return client;
  }

  get localPort(): number {
    return (this.socket as Socket).localPort ?? 0;
  }

  readonly #onData = (chunk: Buffer): void => {
    this.received.push(chunk);
    let from = 0;
    let i = chunk.indexOf(CRLF);
    // A CR at the end of the previous chunk and LF at the start of this one.
    const last = this.#partial.at(-1);
    if (last && last[last.length - 1] === 0x0d && chunk[0] === 0x0a) {
      this.#partial[this.#partial.length - 1] = last.subarray(0, last.length - 1);
      this.#lines.push(Buffer.concat(this.#partial));
      this.#partial = [];
      from = 1;
      i = chunk.indexOf(CRLF, from);
    }
    while (i !== -1) {
      this.#partial.push(chunk.subarray(from, i));
      this.#lines.push(this.#partial.length === 1 ? (this.#partial[0] as Buffer) : Buffer.concat(this.#partial));
      this.#partial = [];
      from = i + 2;
      i = chunk.indexOf(CRLF, from);
    }
    if (from < chunk.length) this.#partial.push(chunk.subarray(from));
    this.#wake?.();
  };

  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#wake?.();
  };

  #attach(socket: Socket | TLSSocket): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
  }

  #detach(socket: Socket | TLSSocket): void {
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onEnd);
  }

  /** The next line's bytes without CRLF; rejects if the connection ends first. */
  async rawLine(): Promise<Buffer> {
    for (;;) {
      const line = this.#lines.shift();
      if (line) return line;
      if (this.#ended) throw new Error('connection closed while waiting for a line');
      await new Promise<void>((resolve) => {
        this.#wake = () => {
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  async line(): Promise<string> {
    return (await this.rawLine()).toString('latin1');
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends a command and returns the one-line reply. */
  async command(cmd: string): Promise<string> {
    this.socket.write(`${cmd}\r\n`);
    return this.line();
  }

  /** Reads a multi-line reply (if the status is +OK) that follows a command already sent. */
  async readMulti(): Promise<MultiLineReply> {
    const status = await this.line();
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    const parts: Buffer[] = [];
    for (;;) {
      const line = await this.rawLine();
      if (line.length === 1 && line[0] === 0x2e) break;
      parts.push(line[0] === 0x2e ? line.subarray(1) : line, CRLF);
    }
    return { status, body: Buffer.concat(parts) };
  }

  async multi(cmd: string): Promise<MultiLineReply> {
    this.socket.write(`${cmd}\r\n`);
    return this.readMulti();
  }

  /** Multi-line reply as text lines. */
  async listing(cmd: string): Promise<string[]> {
    const reply = await this.multi(cmd);
    if (!reply.status.startsWith('+OK')) throw new Error(`${cmd}: ${reply.status}`);
    const text = reply.body.toString('latin1');
    return text === '' ? [] : text.slice(0, -2).split('\r\n');
  }

  /** USER/PASS; throws unless both succeed. */
  async login(user: string, password: string): Promise<string> {
    const u = await this.command(`USER ${user}`);
    if (!u.startsWith('+OK')) throw new Error(`USER: ${u}`);
    const p = await this.command(`PASS ${password}`);
    if (!p.startsWith('+OK')) throw new Error(`PASS: ${p}`);
    return p;
  }

  /**
   * STLS and the TLS handshake, trusting `ca`. `pipelined` is sent in the clear in the same write
   * as STLS (what a man in the middle would inject); the server must throw it away.
   */
  async stls(ca: Buffer, pipelined = ''): Promise<string> {
    this.socket.write(`STLS\r\n${pipelined}`);
    const reply = await this.line();
    if (!reply.startsWith('+OK')) return reply;
    if (this.#lines.length > 0 || this.#partial.length > 0) throw new Error('data after the STLS reply');
    const plain = this.socket;
    this.#detach(plain);
    const secure = tlsConnect({ socket: plain as Socket, host: '127.0.0.1', ca });
    secure.on('error', () => undefined);
    await once(secure, 'secureConnect');
    this.socket = secure;
    this.#attach(secure);
    return reply;
  }

  /** Waits for the server to close; returns everything received on the connection. */
  async untilClosed(): Promise<Buffer> {
    await this.closed;
    return Buffer.concat(this.received);
  }

  /** Lines still unread plus any partial line, as text (for checks after the close). */
  unread(): string {
    return [...this.#lines.map((l) => `${l.toString('latin1')}\r\n`), ...this.#partial.map((p) => p.toString('latin1'))].join('');
  }

  destroy(): void {
    this.socket.destroy();
  }

  async quit(): Promise<string> {
    const reply = await this.command('QUIT');
    await this.closed;
    return reply;
  }
}

// A small POP3 client (RFC 1939, CAPA/PIPELINING/RESP-CODES from RFC 2449, STLS from RFC 2595,
// AUTH PLAIN from RFC 5034) over node:net and node:tls, with no dependencies.
//
// It is the load generator's client and the reference client of the end-to-end tests, so it is
// strict where a server could be wrong: status lines must end in CRLF, a multi-line reply ends only
// at CRLF "." CRLF, and bytes that follow an STLS reply in the clear are an error. Replies are
// parsed by `ReplyReader`, a pure state machine that keeps its state across TCP segments; the
// client around it owns the socket, the command queue and one timer.

import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.', 'latin1');
const CR_ONLY = Buffer.from('\r', 'latin1');

/** Longest status line accepted, CRLF included (RFC 2449 allows 512; this leaves room). */
export const MAX_STATUS_LINE = 8192;

export type Pop3ErrorCode =
  | 'negative-reply' // the server answered -ERR
  | 'timeout' // no complete reply within the command timeout
  | 'closed' // the connection closed while a reply was awaited
  | 'connect' // the TCP or TLS connection could not be made
  | 'protocol' // the server sent something POP3 does not allow
  | 'aborted' // the caller's AbortSignal fired
  | 'invalid-argument'; // the caller asked for something that cannot be sent

export interface Pop3Reply {
  readonly ok: boolean;
  /** The text after +OK / -ERR (and after the response code, if any), without CRLF. */
  readonly text: string;
  /** The RFC 2449 response code without brackets, e.g. `IN-USE`, `SYS/TEMP`, `AUTH`; null if none. */
  readonly respCode: string | null;
}

/** Errors carry a stable `code`, the `cause`, and whether a retry may succeed (`temporary`). */
export class Pop3Error extends Error {
  readonly code: Pop3ErrorCode;
  readonly temporary: boolean;
  /** The command as sent, with secrets replaced; null for the greeting. */
  readonly command: string | null;
  /** The negative reply, for `negative-reply`. */
  readonly reply: Pop3Reply | null;

  constructor(
    code: Pop3ErrorCode,
    message: string,
    options: { cause?: unknown; command?: string | null; reply?: Pop3Reply | null; temporary?: boolean } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'Pop3Error';
    this.code = code;
    this.command = options.command ?? null;
    this.reply = options.reply ?? null;
    this.temporary = options.temporary ?? defaultTemporary(code, this.reply);
  }
}

function defaultTemporary(code: Pop3ErrorCode, reply: Pop3Reply | null): boolean {
  switch (code) {
    case 'protocol':
    case 'invalid-argument':
    case 'aborted':
      return false;
    case 'negative-reply': {
      const rc = reply?.respCode?.toUpperCase() ?? null;
      // RFC 3206 / 2449: AUTH and SYS/PERM are permanent; anything else, or no code, may pass.
      if (rc === null) return true;
      return !(rc === 'AUTH' || rc.startsWith('SYS/PERM'));
    }
    default:
      return true;
  }
}

/** Parses one status line (without CRLF); `'continuation'` for a SASL continuation (`+ ...`). */
export function parseStatusLine(line: string): Pop3Reply | 'continuation' {
  let ok: boolean;
  let rest: string;
  if (line.startsWith('+OK')) {
    ok = true;
    rest = line.slice(3);
  } else if (line.startsWith('-ERR')) {
    ok = false;
    rest = line.slice(4);
  } else if (line === '+' || line.startsWith('+ ')) {
    return 'continuation';
  } else {
    throw new Pop3Error('protocol', `status line is neither +OK nor -ERR: ${JSON.stringify(line.slice(0, 80))}`);
  }
  if (rest.length > 0 && rest.charCodeAt(0) !== 0x20) {
    throw new Pop3Error('protocol', `status indicator not followed by a space: ${JSON.stringify(line.slice(0, 80))}`);
  }
  let text = rest.length > 0 ? rest.slice(1) : '';
  let respCode: string | null = null;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end > 1) {
      respCode = text.slice(1, end);
      text = text.slice(end + 1).replace(/^ /, '');
    }
  }
  return { ok, text, respCode };
}

// ---------------------------------------------------------------------------------------------
// Multi-line body decoding

const S_LINE_START = 0;
const S_DOT = 1; // a '.' began the line and was dropped
const S_DOT_CR = 2; // '.' CR began the line
const S_IN_LINE = 3;
const S_AFTER_CR = 4; // the last data byte was CR
const S_DONE = 5;

export interface BodySink {
  /** Keep the decoded body and return it. */
  readonly keep: boolean;
  /** Called with each decoded piece, in order (a view of the received bytes). */
  readonly onChunk?: ((chunk: Buffer) => void) | undefined;
}

/**
 * Decodes a multi-line response body (the part after the +OK line): removes the byte-stuffing
 * dot at the start of lines and finds the terminating CRLF "." CRLF. State survives chunk
 * boundaries at every byte. Lines end only at CRLF (a bare LF does not start a line). The decoded
 * body keeps every line's CRLF, so its length is the message's size with CRLF line ends.
 */
export class MultilineDecoder {
  /** Decoded octets so far. */
  octets = 0;
  private state = S_LINE_START;
  private readonly pieces: Buffer[] | null;
  private readonly onChunk: ((chunk: Buffer) => void) | undefined;
  private readonly copyKept: boolean;

  /** `copyKept`: the input buffers are reused after `push` returns, so kept pieces are copied. */
  constructor(sink: BodySink = { keep: false }, copyKept = false) {
    this.pieces = sink.keep ? [] : null;
    this.onChunk = sink.onChunk;
    this.copyKept = copyKept;
  }

  get done(): boolean {
    return this.state === S_DONE;
  }

  /**
   * Feeds `buf` from `offset`. Returns the index just past the terminating line once the body is
   * complete (bytes after it belong to the next reply), or -1 when everything was consumed.
   */
  push(buf: Buffer, offset = 0): number {
    if (this.state === S_DONE) throw new Pop3Error('invalid-argument', 'multi-line body already complete');
    const n = buf.length;
    let i = offset;
    while (i < n) {
      const s = this.state;
      if (s === S_IN_LINE) {
        // Jump to the next LF that is followed by '.'; everything before it is plain data.
        const k = buf.indexOf(LF_DOT, i);
        if (k === -1) {
          this.emit(buf, i, n);
          const last = buf[n - 1];
          if (last === CR) this.state = S_AFTER_CR;
          else if (last === LF && n - 1 > i && buf[n - 2] === CR) this.state = S_LINE_START;
          // else: still inside a line (a bare LF ends no line)
          return -1;
        }
        this.emit(buf, i, k + 1);
        // The '.' at k + 1 starts a line only if the LF ended a CRLF.
        if (k > i && buf[k - 1] === CR) this.state = S_LINE_START;
        i = k + 1;
        continue;
      }
      const b = buf[i];
      if (s === S_LINE_START) {
        if (b === DOT) {
          this.state = S_DOT;
          i++;
        } else {
          this.state = S_IN_LINE;
        }
      } else if (s === S_DOT) {
        if (b === CR) {
          this.state = S_DOT_CR;
          i++;
        } else {
          this.state = S_IN_LINE; // the dot was stuffing; this byte is data
        }
      } else if (s === S_DOT_CR) {
        if (b === LF) {
          this.state = S_DONE;
          return i + 1;
        }
        // "." CR X: the dot was stuffing and the CR is data.
        this.emit(CR_ONLY, 0, 1);
        this.state = S_AFTER_CR;
      } else {
        // S_AFTER_CR
        if (b === LF) {
          this.emit(buf, i, i + 1);
          this.state = S_LINE_START;
          i++;
        } else {
          this.state = S_IN_LINE;
        }
      }
    }
    return -1;
  }

  /** The decoded body, if the sink asked to keep it. */
  body(): Buffer | null {
    if (this.pieces === null) return null;
    return this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.octets);
  }

  private emit(buf: Buffer, start: number, end: number): void {
    if (end <= start) return;
    this.octets += end - start;
    if (this.pieces === null && this.onChunk === undefined) return;
    const piece = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    this.pieces?.push(this.copyKept ? Buffer.from(piece) : piece);
    this.onChunk?.(piece);
  }
}

// ---------------------------------------------------------------------------------------------
// Reply reader: the pure part of the client

export interface Expectation {
  /** How the reply is shaped: one line, or a multi-line body when the status is +OK. */
  readonly multiline: boolean;
  readonly sink: BodySink | null;
  /** The command text for error messages (secrets replaced); null for the greeting. */
  readonly label: string | null;
  /** Nothing may follow this reply on the same transport (STLS). */
  readonly last?: boolean;
  /** Answers a `+ ` continuation (SASL); absent means a continuation is a protocol error. */
  readonly onContinuation?: ((text: string) => void) | undefined;
}

export interface ReplyEvent {
  readonly reply: Pop3Reply;
  /** Decoded body octets of a multi-line reply; 0 otherwise. */
  readonly octets: number;
  /** The decoded body if kept; null otherwise. */
  readonly body: Buffer | null;
}

export interface ReplyReaderHandler {
  /** The reply that is now awaited, or undefined if none is. */
  current(): Expectation | undefined;
  /** The awaited reply is complete; `current()` must move on to the next one. */
  complete(event: ReplyEvent): void;
}

/**
 * Splits a stream of server bytes into replies, in order, for a queue of expectations owned by the
 * handler. Pure: no sockets, no timers. Throws `Pop3Error('protocol')` on a malformed stream, after
 * which the reader must be discarded.
 */
export class ReplyReader {
  private partial: Buffer | null = null;
  private decoder: MultilineDecoder | null = null;
  private pendingReply: Pop3Reply | null = null;
  private stopped = false;

  /** `transientChunks`: pushed buffers are reused by the caller afterwards (see MultilineDecoder). */
  constructor(
    private readonly handler: ReplyReaderHandler,
    private readonly transientChunks = false,
  ) {}

  push(chunk: Buffer): void {
    if (this.stopped) {
      throw new Pop3Error('protocol', 'server sent data after a reply that ends the transport (STLS)');
    }
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.decoder !== null) {
        const end = this.decoder.push(chunk, off);
        if (end === -1) return;
        const decoder = this.decoder;
        const reply = this.pendingReply as Pop3Reply;
        this.decoder = null;
        this.pendingReply = null;
        off = end;
        this.finish({ reply, octets: decoder.octets, body: decoder.body() }, chunk, off);
        continue;
      }
      const lf = chunk.indexOf(LF, off);
      if (lf === -1) {
        this.appendPartial(chunk, off, n);
        return;
      }
      let line: Buffer;
      if (this.partial !== null) {
        line = Buffer.concat([this.partial, chunk.subarray(off, lf + 1)]);
        this.partial = null;
      } else {
        line = chunk.subarray(off, lf + 1);
      }
      off = lf + 1;
      if (line.length > MAX_STATUS_LINE) {
        throw new Pop3Error('protocol', `status line longer than ${MAX_STATUS_LINE} octets`);
      }
      if (line.length < 2 || line[line.length - 2] !== CR) {
        throw new Pop3Error('protocol', 'status line not terminated by CRLF');
      }
      const text = line.toString('utf8', 0, line.length - 2);
      const exp = this.handler.current();
      if (exp === undefined) {
        throw new Pop3Error('protocol', `unsolicited line from server: ${JSON.stringify(text.slice(0, 80))}`);
      }
      const parsed = parseStatusLine(text);
      if (parsed === 'continuation') {
        if (exp.onContinuation === undefined) {
          throw new Pop3Error('protocol', `unexpected continuation after ${exp.label ?? 'greeting'}`);
        }
        exp.onContinuation(text.length > 2 ? text.slice(2) : '');
        continue;
      }
      if (parsed.ok && exp.multiline) {
        this.decoder = new MultilineDecoder(exp.sink ?? { keep: false }, this.transientChunks);
        this.pendingReply = parsed;
        continue;
      }
      this.finish({ reply: parsed, octets: 0, body: null }, chunk, off);
    }
  }

  /** True while part of a reply has been received. */
  get midReply(): boolean {
    return this.partial !== null || this.decoder !== null;
  }

  private finish(event: ReplyEvent, chunk: Buffer, off: number): void {
    const exp = this.handler.current();
    if (exp?.last === true && event.reply.ok) {
      this.stopped = true;
      if (off < chunk.length) {
        throw new Pop3Error('protocol', 'server sent data after its STLS reply, before the TLS handshake');
      }
    }
    this.handler.complete(event);
  }

  private appendPartial(chunk: Buffer, from: number, to: number): void {
    const piece = chunk.subarray(from, to);
    this.partial = this.partial === null ? Buffer.from(piece) : Buffer.concat([this.partial, piece]);
    if (this.partial.length > MAX_STATUS_LINE) {
      throw new Pop3Error('protocol', `status line longer than ${MAX_STATUS_LINE} octets`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The client

export interface Pop3ConnectOptions {
  host: string;
  port: number;
  /** Implicit TLS (POP3S): true, or options for tls.connect. */
  tls?: boolean | tls.ConnectionOptions;
  /** Issue STLS right after the greeting: true, or options for tls.connect. */
  starttls?: boolean | tls.ConnectionOptions;
  /** Time allowed for each reply, from the moment it is awaited (and for connect + greeting). Default 30 s. */
  timeoutMs?: number;
  /**
   * Send commands without waiting for earlier replies (RFC 2449 PIPELINING). Off: each command is
   * written when the previous reply is complete. AUTH and STLS always wait.
   */
  pipelining?: boolean;
  /** Default true: small replies should not wait for Nagle. */
  noDelay?: boolean;
  /**
   * Read into one buffer shared by the process's clients instead of a fresh buffer per read
   * (net's `onread`): no allocation and less garbage per read. Pieces given to `onChunk` are then
   * valid only during the call (kept bodies are copied). Plain TCP only; ignored with TLS or STLS.
   * Default false.
   */
  reuseReadBuffer?: boolean;
  signal?: AbortSignal;
}

/** The read buffer of clients with `reuseReadBuffer` (replies are parsed synchronously). */
let sharedReadBuffer: Buffer | null = null;

export interface Pop3Stat {
  count: number;
  size: number;
}
export interface Pop3ListEntry {
  msg: number;
  size: number;
}
export interface Pop3UidlEntry {
  msg: number;
  uid: string;
}
export interface Pop3RetrOptions {
  /** Return the decoded message as `body`. Default false: only count octets. */
  keepBody?: boolean;
  /** Receives decoded pieces as they arrive (views of received bytes). */
  onChunk?: (chunk: Buffer) => void;
}
export interface Pop3RetrResult {
  reply: Pop3Reply;
  /** Octets of the decoded (un-stuffed) body, every line ending in CRLF, terminator excluded. */
  octets: number;
  body: Buffer | null;
}
export interface Pop3CommandResult {
  reply: Pop3Reply;
  /** Decoded body of a positive multi-line reply; null otherwise. */
  body: Buffer | null;
}
/** CAPA: capability name (upper case) to its arguments. */
export type Pop3Capabilities = Map<string, string[]>;

interface Pending extends Expectation {
  readonly data: string | null;
  readonly barrier: boolean;
  written: boolean;
  resolve(event: ReplyEvent): void;
  reject(err: Pop3Error): void;
}

function tlsOptions(value: boolean | tls.ConnectionOptions | undefined): tls.ConnectionOptions {
  return typeof value === 'object' ? value : {};
}

function checkArg(value: string, what: string): void {
  if (/[\r\n\0]/.test(value)) throw new Pop3Error('invalid-argument', `${what} contains CR, LF or NUL`);
}

function checkMsg(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Pop3Error('invalid-argument', `bad message number ${n}`);
}

function parseDecimal(s: string | undefined, what: string): number {
  if (s === undefined || !/^[0-9]{1,15}$/.test(s)) {
    throw new Pop3Error('protocol', `${what} is not a number: ${JSON.stringify(s ?? '')}`);
  }
  return Number(s);
}

function bodyLines(body: Buffer | null): string[] {
  if (body === null || body.length === 0) return [];
  const lines = body.toString('latin1').split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export class Pop3Client {
  /** The greeting (+OK ...). */
  readonly greeting: Pop3Reply;
  /** The APOP timestamp from the greeting (`<...>`), or null. */
  readonly apopTimestamp: string | null;
  private socket: net.Socket;
  private readonly host: string;
  private reader: ReplyReader;
  private readonly queue: Pending[] = [];
  private readonly timeoutMs: number;
  private readonly pipelining: boolean;
  private readonly noDelay: boolean;
  private timer: NodeJS.Timeout | null = null;
  private failure: Pop3Error | null = null;
  private closed = false;
  private readonly closeWaiters: Array<() => void> = [];
  private corked = false;
  private secureFlag: boolean;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => {
    this.fail(new Pop3Error('aborted', 'aborted by caller', { cause: this.signal?.reason }));
  };

  private readonly transientChunks: boolean;

  private constructor(socket: net.Socket, opts: Pop3ConnectOptions, secure: boolean, transientChunks = false) {
    this.socket = socket;
    this.transientChunks = transientChunks;
    this.host = opts.host;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.pipelining = opts.pipelining ?? false;
    this.noDelay = opts.noDelay ?? true;
    this.secureFlag = secure;
    this.signal = opts.signal;
    this.reader = this.newReader();
    this.greeting = { ok: false, text: '', respCode: null };
    this.apopTimestamp = null;
    this.attach(socket);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Connects, reads the greeting, and performs STLS if asked. */
  static async connect(opts: Pop3ConnectOptions): Promise<Pop3Client> {
    if (opts.signal?.aborted) throw new Pop3Error('aborted', 'aborted by caller', { cause: opts.signal.reason });
    if (opts.tls !== undefined && opts.tls !== false && opts.starttls !== undefined && opts.starttls !== false) {
      throw new Pop3Error('invalid-argument', 'tls (implicit) and starttls exclude each other');
    }
    const noDelay = opts.noDelay ?? true;
    const implicitTls = opts.tls !== undefined && opts.tls !== false;
    const reuse = opts.reuseReadBuffer === true && !implicitTls && (opts.starttls === undefined || opts.starttls === false);
    let client: Pop3Client | undefined;
    const socket = implicitTls
      ? tls.connect({ host: opts.host, port: opts.port, ...tlsOptions(opts.tls) })
      : reuse
        ? net.connect({
            host: opts.host,
            port: opts.port,
            noDelay,
            onread: {
              buffer: (sharedReadBuffer ??= Buffer.allocUnsafe(64 * 1024)),
              callback: (n) => {
                client?.onData((sharedReadBuffer as Buffer).subarray(0, n));
                return true;
              },
            },
          })
        : net.connect({ host: opts.host, port: opts.port, noDelay });
    client = new Pop3Client(socket, opts, implicitTls, reuse);
    let greeting: ReplyEvent;
    try {
      greeting = await client.enqueue({ data: null, label: null, multiline: false, sink: null, barrier: true });
    } catch (err) {
      client.destroy();
      throw err;
    }
    if (!greeting.reply.ok) {
      client.destroy();
      throw new Pop3Error('negative-reply', `server greeting: -ERR ${greeting.reply.text}`, {
        reply: greeting.reply,
      });
    }
    const ts = /<[^<>]+@[^<>]+>/.exec(greeting.reply.text);
    (client as { greeting: Pop3Reply }).greeting = greeting.reply;
    (client as { apopTimestamp: string | null }).apopTimestamp = ts === null ? null : ts[0];
    if (opts.starttls !== undefined && opts.starttls !== false) {
      try {
        await client.stls(tlsOptions(opts.starttls));
      } catch (err) {
        client.destroy();
        throw err;
      }
    }
    return client;
  }

  /** True once the transport is TLS (implicit or after STLS). */
  get secure(): boolean {
    return this.secureFlag;
  }

  /** True once the connection is closed or failed. */
  get isClosed(): boolean {
    return this.closed || this.failure !== null;
  }

  // --- commands -------------------------------------------------------------------------------

  /** Sends any command; never throws on -ERR. `multiline`: a positive reply carries a body. */
  async command(line: string, opts: { multiline?: boolean; keepBody?: boolean } = {}): Promise<Pop3CommandResult> {
    checkArg(line, 'command');
    const multiline = opts.multiline ?? false;
    const ev = await this.enqueue({
      data: line,
      label: redact(line),
      multiline,
      sink: multiline ? { keep: opts.keepBody ?? true } : null,
      barrier: false,
    });
    return { reply: ev.reply, body: ev.body };
  }

  async capa(): Promise<Pop3Capabilities> {
    const ev = await this.expectOk('CAPA', true);
    const caps: Pop3Capabilities = new Map();
    for (const line of bodyLines(ev.body)) {
      const parts = line.split(' ').filter((p) => p.length > 0);
      const name = parts.shift();
      if (name !== undefined) caps.set(name.toUpperCase(), parts);
    }
    return caps;
  }

  /** USER then PASS. With pipelining both are sent at once. */
  async login(user: string, password: string): Promise<Pop3Reply> {
    const u = this.user(user);
    const p = this.pass(password);
    p.catch(() => undefined);
    await u;
    return p;
  }

  async user(name: string): Promise<Pop3Reply> {
    checkArg(name, 'user name');
    return (await this.expectOk(`USER ${name}`, false)).reply;
  }

  async pass(password: string): Promise<Pop3Reply> {
    checkArg(password, 'password');
    return (await this.expectOk(`PASS ${password}`, false, 'PASS ***')).reply;
  }

  /** APOP with the greeting's timestamp. */
  async apop(user: string, secret: string): Promise<Pop3Reply> {
    checkArg(user, 'user name');
    if (this.apopTimestamp === null) throw new Pop3Error('invalid-argument', 'greeting has no APOP timestamp');
    const digest = createHash('md5').update(this.apopTimestamp + secret).digest('hex');
    return (await this.expectOk(`APOP ${user} ${digest}`, false, `APOP ${user} ***`)).reply;
  }

  /**
   * AUTH PLAIN (RFC 5034). By default sends the initial response with the command; with
   * `initialResponse: false` waits for the server's `+ ` continuation.
   */
  async authPlain(user: string, password: string, opts: { authzid?: string; initialResponse?: boolean } = {}): Promise<Pop3Reply> {
    const token = Buffer.from(`${opts.authzid ?? ''}\0${user}\0${password}`, 'utf8').toString('base64');
    const ir = opts.initialResponse ?? true;
    let answered = false;
    const ev = await this.enqueue({
      data: ir ? `AUTH PLAIN ${token}` : 'AUTH PLAIN',
      label: 'AUTH PLAIN ***',
      multiline: false,
      sink: null,
      barrier: true,
      onContinuation: () => {
        if (ir || answered) {
          // A second challenge for PLAIN is wrong; cancel the exchange.
          this.write('*');
          return;
        }
        answered = true;
        this.write(token);
      },
    });
    if (!ev.reply.ok) throw negative('AUTH PLAIN ***', ev.reply);
    return ev.reply;
  }

  /** STLS, then the TLS handshake on the same connection. */
  async stls(options: tls.ConnectionOptions = {}): Promise<void> {
    if (this.secureFlag) throw new Pop3Error('invalid-argument', 'connection is already TLS');
    if (this.queue.length > 0) throw new Pop3Error('invalid-argument', 'STLS with commands in flight');
    const ev = await this.enqueue({ data: 'STLS', label: 'STLS', multiline: false, sink: null, barrier: true, last: true });
    if (!ev.reply.ok) throw negative('STLS', ev.reply);
    const plain = this.socket;
    this.detach(plain);
    const servername = net.isIP(this.host) === 0 ? this.host : undefined;
    const secure = tls.connect({ host: this.host, servername, ...options, socket: plain });
    this.socket = secure;
    this.reader = this.newReader();
    this.attach(secure);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        const err = new Pop3Error('timeout', 'TLS handshake timed out', { command: 'STLS' });
        this.fail(err);
        reject(err);
      }, this.timeoutMs);
      const onSecure = (): void => {
        cleanup();
        resolve();
      };
      const onError = (err?: Error): void => {
        cleanup();
        const failure = new Pop3Error('connect', `TLS handshake failed: ${err?.message ?? 'connection closed'}`, {
          cause: err,
          command: 'STLS',
        });
        this.fail(failure);
        reject(this.failure ?? failure);
      };
      const onClose = (): void => onError();
      const cleanup = (): void => {
        clearTimeout(timer);
        secure.off('secureConnect', onSecure);
        secure.off('error', onError);
        secure.off('close', onClose);
      };
      secure.once('secureConnect', onSecure);
      secure.once('error', onError);
      secure.once('close', onClose);
    });
    this.secureFlag = true;
  }

  async stat(): Promise<Pop3Stat> {
    const ev = await this.expectOk('STAT', false);
    const [count, size] = ev.reply.text.split(' ');
    return { count: parseDecimal(count, 'STAT count'), size: parseDecimal(size, 'STAT size') };
  }

  async list(): Promise<Pop3ListEntry[]>;
  async list(msg: number): Promise<Pop3ListEntry>;
  async list(msg?: number): Promise<Pop3ListEntry[] | Pop3ListEntry> {
    if (msg !== undefined) {
      checkMsg(msg);
      const ev = await this.expectOk(`LIST ${msg}`, false);
      return parseListLine(ev.reply.text);
    }
    const ev = await this.expectOk('LIST', true);
    return bodyLines(ev.body).map(parseListLine);
  }

  async uidl(): Promise<Pop3UidlEntry[]>;
  async uidl(msg: number): Promise<Pop3UidlEntry>;
  async uidl(msg?: number): Promise<Pop3UidlEntry[] | Pop3UidlEntry> {
    if (msg !== undefined) {
      checkMsg(msg);
      const ev = await this.expectOk(`UIDL ${msg}`, false);
      return parseUidlLine(ev.reply.text);
    }
    const ev = await this.expectOk('UIDL', true);
    return bodyLines(ev.body).map(parseUidlLine);
  }

  async retr(msg: number, opts: Pop3RetrOptions = {}): Promise<Pop3RetrResult> {
    checkMsg(msg);
    const ev = await this.expectOk(`RETR ${msg}`, true, undefined, { keep: opts.keepBody ?? false, onChunk: opts.onChunk });
    return { reply: ev.reply, octets: ev.octets, body: ev.body };
  }

  /** TOP msg lines: the headers, the blank line, then `lines` body lines. */
  async top(msg: number, lines: number, opts: Pop3RetrOptions = {}): Promise<Pop3RetrResult> {
    checkMsg(msg);
    checkMsg(lines);
    const ev = await this.expectOk(`TOP ${msg} ${lines}`, true, undefined, {
      keep: opts.keepBody ?? true,
      onChunk: opts.onChunk,
    });
    return { reply: ev.reply, octets: ev.octets, body: ev.body };
  }

  async dele(msg: number): Promise<Pop3Reply> {
    checkMsg(msg);
    return (await this.expectOk(`DELE ${msg}`, false)).reply;
  }

  async rset(): Promise<Pop3Reply> {
    return (await this.expectOk('RSET', false)).reply;
  }

  async noop(): Promise<Pop3Reply> {
    return (await this.expectOk('NOOP', false)).reply;
  }

  /** QUIT; resolves once the server has answered +OK and closed the connection. */
  async quit(): Promise<Pop3Reply> {
    let ev: ReplyEvent;
    try {
      ev = await this.enqueue({ data: 'QUIT', label: 'QUIT', multiline: false, sink: null, barrier: true, last: true });
    } catch (err) {
      this.destroy();
      throw err;
    }
    if (!ev.reply.ok) {
      this.destroy();
      throw negative('QUIT', ev.reply);
    }
    await this.waitClosed();
    return ev.reply;
  }

  /** Closes the connection at once; awaited replies fail with `closed`. */
  destroy(): void {
    if (this.closed && this.queue.length === 0) return; // after QUIT: nothing awaits, nothing to close
    this.fail(new Pop3Error('closed', 'connection destroyed by client'));
  }

  // --- machinery --------------------------------------------------------------------------------

  private async expectOk(data: string, multiline: boolean, label?: string, sink?: BodySink): Promise<ReplyEvent> {
    const ev = await this.enqueue({
      data,
      label: label ?? data,
      multiline,
      sink: multiline ? (sink ?? { keep: true }) : null,
      barrier: false,
    });
    if (!ev.reply.ok) throw negative(label ?? data, ev.reply);
    return ev;
  }

  private enqueue(spec: Omit<Pending, 'written' | 'resolve' | 'reject'>): Promise<ReplyEvent> {
    return new Promise<ReplyEvent>((resolve, reject) => {
      if (this.failure !== null) {
        reject(this.failure);
        return;
      }
      if (this.closed) {
        reject(new Pop3Error('closed', 'connection is closed', { command: spec.label }));
        return;
      }
      const pending: Pending = { ...spec, written: spec.data === null, resolve, reject };
      this.queue.push(pending);
      if (this.queue.length === 1) this.armTimer();
      this.pump();
    });
  }

  /** Writes every queued command that may go out now. */
  private pump(): void {
    for (let i = 0; i < this.queue.length; i++) {
      const p = this.queue[i] as Pending;
      if (p.written) {
        if (p.barrier || !this.pipelining) return;
        continue;
      }
      if (i > 0 && (!this.pipelining || p.barrier)) return;
      p.written = true;
      this.write(p.data as string);
      if (p.barrier || !this.pipelining) return;
    }
  }

  private write(line: string): void {
    const socket = this.socket;
    if (this.pipelining && !this.corked) {
      // Commands issued in the same tick leave in one segment.
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(line + '\r\n');
  }

  private newReader(): ReplyReader {
    return new ReplyReader(
      {
        current: () => this.queue[0],
        complete: (event) => {
          const p = this.queue.shift() as Pending;
          this.armTimer();
          p.resolve(event);
          this.pump();
        },
      },
      this.transientChunks,
    );
  }


  private readonly onData = (chunk: Buffer): void => {
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.fail(err instanceof Pop3Error ? err : new Pop3Error('protocol', String(err), { cause: err }));
    }
  };

  private lastSocketError: Error | null = null;
  private connected = false;
  private readonly onConnect = (): void => {
    this.connected = true;
  };
  private readonly onError = (err: Error): void => {
    this.lastSocketError = err;
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.clearTimer();
    this.signal?.removeEventListener('abort', this.onAbort);
    if (this.queue.length > 0) {
      const err = this.lastSocketError;
      const code: Pop3ErrorCode = this.connected ? 'closed' : 'connect';
      const what = this.connected ? 'connection closed by server' : 'could not connect';
      this.rejectAll(
        new Pop3Error(code, err === null ? what : `${what}: ${err.message}`, { cause: err ?? undefined }),
      );
    }
    for (const w of this.closeWaiters.splice(0)) w();
  };

  private attach(socket: net.Socket): void {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    if (socket instanceof tls.TLSSocket) socket.on('secureConnect', this.onConnect);
    else socket.on('connect', this.onConnect);
    if (this.noDelay) socket.setNoDelay(true);
  }

  private detach(socket: net.Socket): void {
    socket.off('data', this.onData);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    socket.off('connect', this.onConnect);
    socket.off('secureConnect', this.onConnect);
  }

  private armTimer(): void {
    if (this.queue.length === 0) {
      this.clearTimer();
      return;
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        const head = this.queue[0];
        this.fail(
          new Pop3Error('timeout', `no complete reply to ${head?.label ?? 'greeting'} within ${this.timeoutMs} ms`, {
            command: head?.label ?? null,
          }),
        );
      }, this.timeoutMs);
    } else {
      this.timer.refresh();
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private rejectAll(err: Pop3Error): void {
    const pending = this.queue.splice(0);
    for (const p of pending) {
      // Each awaiting command fails with its own label; the head gets the original error.
      p.reject(p === pending[0] ? err : new Pop3Error(err.code, err.message, { cause: err, command: p.label, temporary: err.temporary }));
    }
  }

  private fail(err: Pop3Error): void {
    if (this.failure === null) this.failure = err;
    this.clearTimer();
    this.rejectAll(err);
    if (!this.socket.destroyed) this.socket.destroy();
  }

  private waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
      }, this.timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

function redact(line: string): string {
  const upper = line.slice(0, 5).toUpperCase();
  if (upper.startsWith('PASS ')) return 'PASS ***';
  if (upper.startsWith('AUTH ')) return line.split(' ').slice(0, 2).join(' ') + (line.split(' ').length > 2 ? ' ***' : '');
  if (upper.startsWith('APOP ')) return line.split(' ').slice(0, 2).join(' ') + ' ***';
  return line;
}

function negative(label: string, reply: Pop3Reply): Pop3Error {
  const code = reply.respCode === null ? '' : `[${reply.respCode}] `;
  return new Pop3Error('negative-reply', `${label}: -ERR ${code}${reply.text}`, { command: label, reply });
}

function parseListLine(line: string): Pop3ListEntry {
  const [n, size] = line.split(' ');
  return { msg: parseDecimal(n, 'LIST message number'), size: parseDecimal(size, 'LIST size') };
}

function parseUidlLine(line: string): Pop3UidlEntry {
  const sp = line.indexOf(' ');
  const uid = sp === -1 ? '' : line.slice(sp + 1);
  if (uid.length < 1 || uid.length > 70 || !/^[\x21-\x7e]+$/.test(uid)) {
    throw new Pop3Error('protocol', `bad unique-id in UIDL line: ${JSON.stringify(line.slice(0, 100))}`);
  }
  return { msg: parseDecimal(sp === -1 ? line : line.slice(0, sp), 'UIDL message number'), uid };
}

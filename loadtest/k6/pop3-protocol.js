// POP3 client protocol for load scripts: the command sequence of a mail-fetching session, reply
// parsing (RFC 1939 status lines with RFC 2449 response codes), multi-line detection and
// dot-unstuffing. Plain ES module with no imports, so the same code runs in k6 (pop3-session.js,
// over k6/x/tcp) and in Node (loadtest/test/k6-protocol.test.ts, over node:net). Bytes in are
// Uint8Array; nothing here needs Buffer, TextDecoder or timers.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** Longest status line accepted, CRLF included (RFC 2449 allows 512; this leaves room). */
export const MAX_STATUS_LINE = 8192;

/** A failed session step: `stage` says where, `reply` holds a negative reply if there was one. */
export class Pop3ProtocolError extends Error {
  constructor(stage, message, reply) {
    super(`${stage}: ${message}`);
    this.name = 'Pop3ProtocolError';
    this.stage = stage;
    this.reply = reply === undefined ? null : reply;
  }
}

/** Bytes as a string, one character per octet (status lines are ASCII). */
export function latin1(bytes, start, end) {
  let s = '';
  const stop = end === undefined ? bytes.length : end;
  for (let i = start === undefined ? 0 : start; i < stop; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, Math.min(i + 4096, stop)));
  }
  return s;
}

/**
 * Whether a positive reply to `command` carries a multi-line body (RFC 1939, RFC 2449 CAPA):
 * CAPA, LIST and UIDL without an argument, RETR, TOP.
 */
export function isMultiline(command) {
  const words = command.trim().split(/\s+/);
  const verb = (words[0] || '').toUpperCase();
  if (verb === 'CAPA' || verb === 'RETR' || verb === 'TOP') return true;
  if (verb === 'LIST' || verb === 'UIDL') return words.length === 1;
  return false;
}

/**
 * One status line without CRLF: `{ ok, code, text }`, `code` the RFC 2449 response code without
 * brackets (`AUTH`, `IN-USE`, `SYS/TEMP`) or null. Throws on anything but +OK / -ERR.
 */
export function parseStatusLine(line) {
  let ok;
  let rest;
  if (line.startsWith('+OK')) {
    ok = true;
    rest = line.slice(3);
  } else if (line.startsWith('-ERR')) {
    ok = false;
    rest = line.slice(4);
  } else {
    throw new Pop3ProtocolError('protocol', `status line is neither +OK nor -ERR: ${JSON.stringify(line.slice(0, 80))}`);
  }
  if (rest.length > 0 && rest[0] !== ' ') {
    throw new Pop3ProtocolError('protocol', `status indicator not followed by a space: ${JSON.stringify(line.slice(0, 80))}`);
  }
  let text = rest.slice(1);
  let code = null;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end > 1) {
      code = text.slice(1, end);
      text = text.slice(end + 1).replace(/^ /, '');
    }
  }
  return { ok, code, text };
}

// Body decoder states.
const LINE_START = 0;
const AFTER_DOT = 1; // a line began with '.', which was dropped
const AFTER_DOT_CR = 2; // the line began with '.' CR
const IN_LINE = 3;
const AFTER_CR = 4; // the last data octet was CR
const DONE = 5;
const CR_ONLY = new Uint8Array([CR]);

/**
 * Decodes a multi-line body (what follows the +OK line): drops the stuffing dot at the start of a
 * line and stops at CRLF "." CRLF. A line starts only after CRLF (a bare LF starts none). The
 * decoded octets keep each line's CRLF, so their count is the size LIST reports. Its state
 * survives any split of the input.
 */
export class BodyDecoder {
  constructor(keep) {
    this.octets = 0;
    this.state = LINE_START;
    this.pieces = keep ? [] : null;
  }

  get done() {
    return this.state === DONE;
  }

  /** Feeds `bytes` from `offset`; returns the index after the terminator, or -1 if it is still to come. */
  push(bytes, offset) {
    let i = offset === undefined ? 0 : offset;
    let from = i; // start of the run of data octets not yet emitted
    const n = bytes.length;
    while (i < n) {
      const b = bytes[i];
      const s = this.state;
      if (s === IN_LINE) {
        if (b === CR) this.state = AFTER_CR;
        i++;
      } else if (s === AFTER_CR) {
        this.state = b === LF ? LINE_START : b === CR ? AFTER_CR : IN_LINE;
        i++;
      } else if (s === LINE_START) {
        if (b === DOT) {
          this.emit(bytes, from, i);
          this.state = AFTER_DOT;
          i++;
          from = i;
        } else {
          this.state = IN_LINE;
        }
      } else if (s === AFTER_DOT) {
        if (b === CR) {
          this.state = AFTER_DOT_CR;
          i++;
          from = i;
        } else {
          this.state = IN_LINE; // the dot was stuffing; this octet is data
        }
      } else {
        // AFTER_DOT_CR
        if (b === LF) {
          this.state = DONE;
          return i + 1;
        }
        // "." CR x: the dot was stuffing and the CR is data.
        this.emit(CR_ONLY, 0, 1);
        this.state = AFTER_CR;
        from = i;
      }
    }
    // A CR held back after a dot is emitted once the next octet says what it was.
    if (this.state !== AFTER_DOT_CR && this.state !== AFTER_DOT) this.emit(bytes, from, n);
    return -1;
  }

  /** The decoded body as one Uint8Array (only when constructed with keep). */
  body() {
    if (this.pieces === null) return null;
    const out = new Uint8Array(this.octets);
    let at = 0;
    for (const p of this.pieces) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  emit(bytes, start, end) {
    if (end <= start) return;
    this.octets += end - start;
    if (this.pieces !== null) this.pieces.push(bytes.slice(start, end));
  }
}

/**
 * Splits the server's byte stream into replies for the commands awaited, in order. `expect()`
 * queues what the next reply looks like; `push()` returns the replies it completed:
 * `{ ok, code, text, octets, body }` (octets and body for a multi-line +OK reply).
 */
export class ReplyReader {
  constructor() {
    this.expected = [];
    this.partial = [];
    this.partialLength = 0;
    this.decoder = null;
    this.pending = null;
  }

  /** The next reply is multi-line when positive (`multiline`), its body kept when `keepBody`. */
  expect(multiline, keepBody) {
    this.expected.push({ multiline: !!multiline, keepBody: !!keepBody });
  }

  get awaiting() {
    return this.expected.length;
  }

  push(bytes) {
    const done = [];
    let off = 0;
    while (off < bytes.length) {
      if (this.decoder !== null) {
        const end = this.decoder.push(bytes, off);
        if (end === -1) return done;
        const reply = this.pending;
        reply.octets = this.decoder.octets;
        reply.body = this.decoder.body();
        this.decoder = null;
        this.pending = null;
        this.expected.shift();
        done.push(reply);
        off = end;
        continue;
      }
      const lf = bytes.indexOf(LF, off);
      if (lf === -1) {
        this.keepPartial(bytes.subarray(off));
        return done;
      }
      const line = this.takeLine(bytes.subarray(off, lf + 1));
      off = lf + 1;
      if (line.length < 2 || line[line.length - 2] !== CR) throw new Pop3ProtocolError('protocol', 'status line not terminated by CRLF');
      const exp = this.expected[0];
      const text = latin1(line, 0, line.length - 2);
      if (exp === undefined) throw new Pop3ProtocolError('protocol', `unsolicited line from server: ${JSON.stringify(text.slice(0, 80))}`);
      const status = parseStatusLine(text);
      const reply = { ok: status.ok, code: status.code, text: status.text, octets: 0, body: null };
      if (status.ok && exp.multiline) {
        this.decoder = new BodyDecoder(exp.keepBody);
        this.pending = reply;
        continue;
      }
      this.expected.shift();
      done.push(reply);
    }
    return done;
  }

  keepPartial(piece) {
    this.partial.push(piece.slice());
    this.partialLength += piece.length;
    if (this.partialLength > MAX_STATUS_LINE) throw new Pop3ProtocolError('protocol', `status line longer than ${MAX_STATUS_LINE} octets`);
  }

  takeLine(tail) {
    if (this.partial.length === 0) {
      if (tail.length > MAX_STATUS_LINE) throw new Pop3ProtocolError('protocol', `status line longer than ${MAX_STATUS_LINE} octets`);
      return tail;
    }
    const line = new Uint8Array(this.partialLength + tail.length);
    let at = 0;
    for (const p of this.partial) {
      line.set(p, at);
      at += p.length;
    }
    line.set(tail, at);
    this.partial = [];
    this.partialLength = 0;
    if (line.length > MAX_STATUS_LINE) throw new Pop3ProtocolError('protocol', `status line longer than ${MAX_STATUS_LINE} octets`);
    return line;
  }
}

/**
 * A POP3 conversation over a transport `{ write(text), read() }`: `write` sends a string (may
 * return a Promise), `read` resolves with the next Uint8Array from the server or null once it
 * closed (and rejects on an error or timeout). One command at a time (no pipelining).
 */
export class Pop3Conversation {
  constructor(transport) {
    this.transport = transport;
    this.reader = new ReplyReader();
    this.ready = [];
    this.closed = false;
  }

  /** The greeting (`+OK ...`), as a reply. */
  greeting() {
    this.reader.expect(false, false);
    return this.next('greeting');
  }

  /** Sends `line` (without CRLF) and resolves with its reply; multi-line when `isMultiline(line)`. */
  async command(line, options) {
    if (/[\r\n]/.test(line)) throw new Pop3ProtocolError('command', 'a command may not contain CR or LF');
    const keepBody = options !== undefined && options.keepBody === true;
    this.reader.expect(isMultiline(line), keepBody);
    await this.transport.write(line + '\r\n');
    return this.next(line.slice(0, 4).toUpperCase() === 'PASS' ? 'PASS ***' : line);
  }

  /** After QUIT's +OK: resolves once the server has closed; anything it sends first is an error. */
  async waitClosed() {
    while (!this.closed) {
      const chunk = await this.transport.read();
      if (chunk === null) this.closed = true;
      else if (chunk.length > 0) throw new Pop3ProtocolError('quit', 'server sent data after its QUIT reply');
    }
  }

  async next(label) {
    while (this.ready.length === 0) {
      if (this.closed) throw new Pop3ProtocolError('closed', `connection closed while awaiting the reply to ${label}`);
      const chunk = await this.transport.read();
      if (chunk === null) {
        this.closed = true;
        continue;
      }
      for (const reply of this.reader.push(chunk)) this.ready.push(reply);
    }
    return this.ready.shift();
  }
}

function expectOk(stage, reply) {
  if (!reply.ok) throw new Pop3ProtocolError(stage, `-ERR ${reply.code === null ? '' : `[${reply.code}] `}${reply.text}`, reply);
  return reply;
}

function bodyLines(body) {
  const text = latin1(body);
  const lines = text.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function decimal(stage, s) {
  if (!/^\d+$/.test(s || '')) throw new Pop3ProtocolError(stage, `not a number: ${JSON.stringify(s)}`);
  return Number(s);
}

/** `STAT` reply text `count size`. */
export function parseStat(text) {
  const [count, size] = text.split(' ');
  return { count: decimal('stat', count), size: decimal('stat', size) };
}

/** A LIST body: `[{ msg, size }]`. */
export function parseList(body) {
  return bodyLines(body).map((line) => {
    const [msg, size] = line.split(' ');
    return { msg: decimal('list', msg), size: decimal('list', size) };
  });
}

/** A UIDL body: `[{ msg, uid }]`. */
export function parseUidl(body) {
  return bodyLines(body).map((line) => {
    const sp = line.indexOf(' ');
    const uid = sp === -1 ? '' : line.slice(sp + 1);
    if (!/^[\x21-\x7e]{1,70}$/.test(uid)) throw new Pop3ProtocolError('uidl', `bad unique-id line: ${JSON.stringify(line.slice(0, 100))}`);
    return { msg: decimal('uidl', line.slice(0, sp)), uid };
  });
}

/** `user:password` lines (or a `{PLAIN}` passwd-file); blank lines and `#` comments skipped. */
export function parseAccounts(text) {
  const accounts = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 1) throw new Error(`account line without "user:password": ${JSON.stringify(line.slice(0, 40))}`);
    let password = line.slice(colon + 1);
    if (password.startsWith('{PLAIN}')) password = password.slice(7).split(':')[0];
    accounts.push({ user: line.slice(0, colon), password });
  }
  return accounts;
}

/**
 * One mail-fetching session, as a mail client polls: greeting, optional CAPA, USER/PASS, STAT,
 * LIST, UIDL, RETR of every message (or the first `retr`, or none), optional DELE of those
 * retrieved, QUIT, and the server's close. Each RETR's decoded size must equal its LIST size.
 *
 * options: { user, password, capa = false, retr = 'all' | 'none' | number, dele = false,
 *            keepBodies = false, now = () => Date.now() }
 * Resolves with { greeting, capabilities, stat, list, uidl, retrieved: [{ msg, octets, body }],
 * octets, loginMs, sessionMs }. Rejects with Pop3ProtocolError (`stage`: greeting, capa, login,
 * stat, list, uidl, retr, dele, quit, protocol, closed) or the transport's error.
 */
export async function runSession(transport, options) {
  const now = options.now || (() => Date.now());
  const started = now();
  const pop3 = new Pop3Conversation(transport);
  const greeting = expectOk('greeting', await pop3.greeting());
  let capabilities = null;
  if (options.capa) {
    const capa = expectOk('capa', await pop3.command('CAPA', { keepBody: true }));
    capabilities = bodyLines(capa.body).map((l) => l.split(' ')[0].toUpperCase());
  }
  const loginStart = now();
  expectOk('login', await pop3.command(`USER ${options.user}`));
  expectOk('login', await pop3.command(`PASS ${options.password}`));
  const loginMs = now() - loginStart;
  const stat = parseStat(expectOk('stat', await pop3.command('STAT')).text);
  const list = parseList(expectOk('list', await pop3.command('LIST', { keepBody: true })).body);
  if (list.length !== stat.count) throw new Pop3ProtocolError('list', `LIST has ${list.length} messages, STAT said ${stat.count}`);
  const uidl = parseUidl(expectOk('uidl', await pop3.command('UIDL', { keepBody: true })).body);
  const want = options.retr === undefined || options.retr === 'all' ? list.length : options.retr === 'none' ? 0 : Number(options.retr);
  const retrieved = [];
  let octets = 0;
  for (const entry of list.slice(0, want)) {
    const reply = expectOk('retr', await pop3.command(`RETR ${entry.msg}`, { keepBody: options.keepBodies === true }));
    if (reply.octets !== entry.size) {
      throw new Pop3ProtocolError('retr', `size-mismatch: message ${entry.msg} has ${reply.octets} octets, LIST said ${entry.size}`);
    }
    octets += reply.octets;
    retrieved.push({ msg: entry.msg, octets: reply.octets, body: reply.body });
  }
  if (options.dele) {
    for (const r of retrieved) expectOk('dele', await pop3.command(`DELE ${r.msg}`));
  }
  expectOk('quit', await pop3.command('QUIT'));
  await pop3.waitClosed();
  return { greeting: greeting.text, capabilities, stat, list, uidl, retrieved, octets, loginMs, sessionMs: now() - started };
}

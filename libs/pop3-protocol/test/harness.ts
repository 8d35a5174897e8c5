/**
 * Test support: fixtures and a tiny pure driver that plays the gateway's part. It feeds client
 * bytes through LineReader -> step, performs every effect synchronously (login against a fixed
 * account table, send-message rendered through DotStuffer, commit) and collects the exact bytes
 * the server would write. `checkStep` holds the contract every step must keep; the driver calls
 * it on every step, so every test that drives a session also checks the contract.
 */
import { createHash } from 'node:crypto';
import {
  DotStuffer,
  LineReader,
  greeting,
  initialState,
  step,
  type Credentials,
  type Effect,
  type LinkState,
  type LoginMechanism,
  type LoginResult,
  type MessageInfo,
  type SessionConfig,
  type SessionInput,
  type SessionState,
  type TransactionState,
} from '../src/index.js';

export const APOP_TIMESTAMP = '<1896.697170952@postern.example>';

export const CONFIG: SessionConfig = {
  apopTimestamp: APOP_TIMESTAMP,
  implementation: 'Postern',
  tlsAvailable: true,
  saslMechanisms: ['PLAIN', 'LOGIN'],
  loginDelay: null,
  expire: null,
  maxBadCommands: 10,
  maxAuthFailures: 3,
};

export const PLAIN_LINK: LinkState = { secure: false, plaintextAllowed: true };
export const STRICT_LINK: LinkState = { secure: false, plaintextAllowed: false };
export const TLS_LINK: LinkState = { secure: true, plaintextAllowed: true };

export function config(overrides: Partial<SessionConfig> = {}): SessionConfig {
  return { ...CONFIG, ...overrides };
}

/** Message bodies of the fixed maildrop: dots at line starts, a lone `.` line, no final CRLF. */
export const BODIES: readonly Buffer[] = [
  Buffer.from(
    'From: alice@example.org\r\nSubject: dots\r\n\r\nHello\r\n.leading dot\r\n.\r\n..two\r\nbye\r\n',
    'latin1',
  ),
  Buffer.from('Subject: plain\r\nX-Long: yes\r\n\r\nline 1\r\nline 2\r\nline 3\r\n', 'latin1'),
  Buffer.from('Subject: open end\r\n\r\n.first\r\nno final newline', 'latin1'),
  Buffer.from('.Subject: dot header\r\n\r\n', 'latin1'),
];

export const MESSAGES: readonly MessageInfo[] = [
  { uid: 'whqtswO00WBw418f9t5JxYwZ', size: BODIES[0]!.length },
  { uid: 'QhdPYR:00WBw1Ph7x7', size: BODIES[1]!.length },
  { uid: 'aUI8X4!L7u0', size: BODIES[2]!.length },
  { uid: 'ZZ-9', size: BODIES[3]!.length },
];

export const PASSWORDS: Readonly<Record<string, string>> = { alice: 'wonderland', bob: 'pass word' };

export function apopDigest(password: string, timestamp = APOP_TIMESTAMP): string {
  return createHash('md5').update(timestamp + password).digest('hex');
}

/** Fixed account table: alice and bob log in, carol is locked, dave too early, erin hits a fault. */
export function fixedLogin(_mechanism: LoginMechanism, credentials: Credentials): LoginResult {
  switch (credentials.username) {
    case 'carol':
      return { ok: false, code: 'IN-USE' };
    case 'dave':
      return { ok: false, code: 'LOGIN-DELAY' };
    case 'erin':
      return { ok: false, code: 'SYS/TEMP' };
  }
  const password = Object.hasOwn(PASSWORDS, credentials.username) ? PASSWORDS[credentials.username] : undefined;
  if (password === undefined) return { ok: false, code: 'AUTH' };
  const good = credentials.kind === 'password' ? credentials.password === password : credentials.digest === apopDigest(password);
  return good ? { ok: true, messages: MESSAGES } : { ok: false, code: 'AUTH' };
}

export const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** `TOP n`: headers, the blank line, then n body lines (RFC 1939 section 7). */
export function topOf(body: Buffer, bodyLines: number): Buffer {
  const sep = body.indexOf('\r\n\r\n');
  if (sep === -1) return body;
  let end = sep + 4;
  for (let k = 0; k < bodyLines && end < body.length; k++) {
    const lf = body.indexOf(0x0a, end);
    end = lf === -1 ? body.length : lf + 1;
  }
  return body.subarray(0, end);
}

/** Writes a message the way the gateway streams it: `+OK`, dot-stuffed chunks, terminator. */
export function renderMessage(body: Buffer, bodyLines: number | null, chunkSize: number): Buffer[] {
  const selected = bodyLines === null ? body : topOf(body, bodyLines);
  const stuffer = new DotStuffer();
  const parts: Buffer[] = [Buffer.from(`+OK ${selected.length} octets\r\n`, 'latin1')];
  for (let i = 0; i < selected.length; i += chunkSize) parts.push(stuffer.push(selected.subarray(i, i + chunkSize)));
  parts.push(stuffer.finish());
  return parts;
}

export function renderEffect(effect: Effect, bodyChunk = 7): Buffer[] {
  switch (effect.type) {
    case 'reply':
      return [Buffer.from(effect.text, 'utf8')];
    case 'reply-lines': {
      const parts = [`${effect.first}\r\n`];
      for (const line of effect.lines) parts.push(`${line}\r\n`);
      parts.push('.\r\n');
      return [Buffer.from(parts.join(''), 'utf8')];
    }
    case 'send-message':
      return renderMessage(BODIES[effect.index] as Buffer, effect.bodyLines, bodyChunk);
    default:
      return [];
  }
}

const REPLY_EFFECTS: ReadonlySet<Effect['type']> = new Set(['reply', 'reply-lines', 'send-message']);

export function isReply(effect: Effect): boolean {
  return REPLY_EFFECTS.has(effect.type);
}

/** The effects each phase may produce for each kind of input. */
function allowedEffects(before: SessionState, input: SessionInput): ReadonlySet<Effect['type']> {
  const none = new Set<Effect['type']>();
  switch (input.type) {
    case 'line':
    case 'line-too-long':
      if (before.phase === 'authorization') {
        return before.sasl !== null
          ? new Set(['reply', 'login', 'close'])
          : new Set(['reply', 'reply-lines', 'login', 'start-tls', 'close']);
      }
      if (before.phase === 'transaction') return new Set(['reply', 'reply-lines', 'send-message', 'commit', 'close']);
      return none;
    case 'login-result':
      return before.phase === 'pending-login' ? new Set(['reply', 'close']) : none;
    case 'commit-result':
      return before.phase === 'update' ? new Set(['reply', 'close']) : none;
    case 'tls-started':
    case 'message-sent':
      return none;
    case 'abort':
      return before.phase === 'closed' ? none : new Set(['reply', 'close']);
  }
}

function fail(message: string, before: SessionState, input: SessionInput, effects: readonly Effect[]): never {
  const shown = effects.map((e) => (e.type === 'reply-lines' ? { ...e, lines: '<iterable>' } : e));
  throw new Error(`${message}\n  phase: ${before.phase}\n  input: ${JSON.stringify(input)}\n  effects: ${JSON.stringify(shown)}`);
}

/**
 * The contract of one step. Call it before anything else uses `after` (DELE and RSET update the
 * deleted bitmap in place, so `before` must not be inspected for deletions afterwards).
 */
export function checkStep(before: SessionState, input: SessionInput, after: SessionState, effects: readonly Effect[]): void {
  const allowed = allowedEffects(before, input);
  for (const e of effects) if (!allowed.has(e.type)) fail(`effect ${e.type} not allowed here`, before, input, effects);
  if (input.type === 'tls-started') {
    // Only STLS (or a gateway that starts TLS before the first command) leads here; RFC 2595
    // section 4: everything learned in clear is forgotten. Anywhere else the event is stale.
    if (before.phase === 'pending-tls' || before.phase === 'authorization') {
      if (after.phase !== 'authorization' || after.user !== null || after.sasl !== null || after.link !== input.link) {
        fail('tls-started did not reset the authorization state', before, input, effects);
      }
    } else if (after !== before) {
      fail('a stale tls-started changed the state', before, input, effects);
    }
  } else if (allowed.size === 0 && after !== before) {
    fail('state changed on an ignored input', before, input, effects);
  }
  if (before.phase === 'closed' && after.phase !== 'closed') fail('left the closed phase', before, input, effects);

  const closeAt = effects.findIndex((e) => e.type === 'close');
  const becameClosed = before.phase !== 'closed' && after.phase === 'closed';
  if (becameClosed !== (closeAt !== -1)) fail('close effect and closed phase disagree', before, input, effects);
  if (closeAt !== -1 && closeAt !== effects.length - 1) fail('close is not the last effect', before, input, effects);
  if (effects.filter(isReply).length > 1) fail('more than one reply in one step', before, input, effects);
  if (input.type === 'abort' && before.phase !== 'closed' && effects.filter(isReply).length !== 1) fail('abort without a reply', before, input, effects);

  for (const e of effects) {
    switch (e.type) {
      case 'reply':
        if (!/^(\+OK|-ERR|\+ )/.test(e.text)) fail('reply without status', before, input, effects);
        if (!e.text.endsWith('\r\n') || e.text.indexOf('\n') !== e.text.length - 1 || e.text.indexOf('\r') !== e.text.length - 2) {
          fail('reply is not exactly one CRLF-terminated line', before, input, effects);
        }
        if (e.text.length > 512) fail('reply longer than 512 octets (RFC 2449)', before, input, effects);
        break;
      case 'reply-lines': {
        if (!e.first.startsWith('+OK') || /[\r\n]/.test(e.first)) fail('bad multi-line first line', before, input, effects);
        break;
      }
      case 'login':
        if (after.phase !== 'pending-login') fail('login without pending-login', before, input, effects);
        break;
      case 'start-tls':
        if (after.phase !== 'pending-tls') fail('start-tls without pending-tls', before, input, effects);
        if (effects[0]?.type !== 'reply' || !effects[0].text.startsWith('+OK')) fail('start-tls before +OK', before, input, effects);
        break;
      case 'commit': {
        if (after.phase !== 'update' || before.phase !== 'transaction') fail('commit outside QUIT in transaction', before, input, effects);
        const t = before as TransactionState;
        const expected: number[] = [];
        const expired = new Set(e.expired);
        for (let i = 0; i < t.deleted.length; i++) {
          if (t.deleted[i] === 1 && expired.has(i)) fail('a DELE\'d message counted as expired', before, input, effects);
          if (t.deleted[i] === 1 || expired.has(i)) expected.push(i);
        }
        if (JSON.stringify(expected) !== JSON.stringify(e.deleted)) fail('commit does not list exactly the deleted and expired messages', before, input, effects);
        const policy = t.config.expire;
        if ((policy === null || policy === 'NEVER') && e.expired.length > 0) fail('expired messages without an EXPIRE policy', before, input, effects);
        if (policy === 0 && e.expired.some((i) => t.retrieved[i] !== 1)) fail('EXPIRE 0 removes a message not retrieved', before, input, effects);
        break;
      }
      case 'send-message': {
        const t = before as TransactionState;
        if (!Number.isInteger(e.index) || e.index < 0 || e.index >= t.messages.length || t.deleted[e.index] === 1) {
          fail('send-message for a message that is not live', before, input, effects);
        }
        if (e.bodyLines !== null && !(Number.isInteger(e.bodyLines) && e.bodyLines >= 0)) fail('bad bodyLines', before, input, effects);
        break;
      }
      case 'close':
        break;
    }
  }
}

/** Consumes a reply-lines iterable once and checks each line is safe to send undotted. */
export function checkedLines(effect: Extract<Effect, { type: 'reply-lines' }>): string[] {
  const lines = [...effect.lines];
  for (const line of lines) {
    if (line.startsWith('.') || /[\r\n]/.test(line)) throw new Error(`unsafe line in multi-line reply: ${JSON.stringify(line)}`);
  }
  return lines;
}

export interface LineRecord {
  readonly event: { kind: 'line'; line: string } | { kind: 'too-long' };
  readonly phase: SessionState['phase'];
  readonly inSasl: boolean;
  /** Reply effects caused by this line, its follow-ups included (login-result, commit-result). */
  readonly replies: readonly string[];
  readonly saslAfter: boolean;
}

export interface DriverOptions {
  readonly config?: SessionConfig;
  readonly link?: LinkState;
  /** The link once TLS is up. */
  readonly tlsLink?: LinkState;
  readonly lineLimit?: number;
  readonly login?: (mechanism: LoginMechanism, credentials: Credentials) => LoginResult;
  readonly commitOk?: boolean;
  /** Chunk size used to stream message bodies through DotStuffer. */
  readonly bodyChunk?: number;
  /** Clock reported with a successful login (ms since the epoch), for EXPIRE n. */
  readonly now?: number;
}

/** Plays the gateway: one reader, one state, effects performed synchronously, output collected. */
export class Driver {
  state: SessionState;
  readonly reader: LineReader;
  readonly output: Buffer[] = [];
  readonly logins: { mechanism: LoginMechanism; credentials: Credentials }[] = [];
  readonly commits: number[][] = [];
  readonly lines: LineRecord[] = [];
  /** Which byte stream is live: the clear one until STLS succeeds, then the TLS one. */
  stream: 'clear' | 'tls' = 'clear';
  closed = false;
  steps = 0;
  readonly #opts: DriverOptions;

  constructor(opts: DriverOptions = {}) {
    this.#opts = opts;
    const cfg = opts.config ?? CONFIG;
    this.state = initialState(cfg, opts.link ?? PLAIN_LINK);
    this.reader = new LineReader(opts.lineLimit ?? 253);
    this.output.push(...renderEffect(greeting(cfg)));
  }

  /** Bytes from the client on `stream`; bytes on a stream that is no longer live are dropped. */
  push(chunk: Buffer, stream: 'clear' | 'tls' = 'clear'): void {
    if (this.closed || stream !== this.stream) return;
    this.reader.push(chunk);
    this.#drain();
  }

  get bytes(): Buffer {
    return Buffer.concat(this.output);
  }

  #drain(): void {
    while (!this.closed) {
      const phase = this.state.phase;
      // The gateway only reads while it waits for a command.
      if (phase !== 'authorization' && phase !== 'transaction') return;
      const event = this.reader.next();
      if (event === undefined) return;
      const inSasl = this.state.phase === 'authorization' && this.state.sasl !== null;
      const replies: string[] = [];
      this.apply(event.kind === 'line' ? { type: 'line', line: event.line } : { type: 'line-too-long' }, replies);
      const after = this.state;
      this.lines.push({
        event: event.kind === 'line' ? { kind: 'line', line: event.line } : { kind: 'too-long' },
        phase,
        inSasl,
        replies,
        saslAfter: after.phase === 'authorization' && after.sasl !== null,
      });
    }
  }

  /** One input, its effects performed, follow-up results fed back. */
  apply(input: SessionInput, replies: string[] = []): void {
    const before = this.state;
    const { state, effects } = step(before, input);
    this.steps++;
    checkStep(before, input, state, effects);
    this.state = state;
    const followUps: SessionInput[] = [];
    for (const effect of effects) {
      switch (effect.type) {
        case 'reply':
        case 'send-message':
          for (const part of renderEffect(effect, this.#opts.bodyChunk)) this.output.push(part);
          replies.push(effect.type === 'reply' ? effect.text : `send-message ${effect.index} ${effect.bodyLines}`);
          if (effect.type === 'send-message') {
            const body = BODIES[effect.index] as Buffer;
            const octets = (effect.bodyLines === null ? body : topOf(body, effect.bodyLines)).length;
            followUps.push({ type: 'message-sent', index: effect.index, octets });
          }
          break;
        case 'reply-lines': {
          checkedLines(effect);
          for (const part of renderEffect(effect)) this.output.push(part);
          replies.push(`${effect.first}\r\n`);
          break;
        }
        case 'login':
          this.logins.push({ mechanism: effect.mechanism, credentials: effect.credentials });
          followUps.push({
            type: 'login-result',
            result: (this.#opts.login ?? fixedLogin)(effect.mechanism, effect.credentials),
            ...(this.#opts.now === undefined ? {} : { now: this.#opts.now }),
          });
          break;
        case 'start-tls':
          // Nothing sent in clear after STLS may be acted on (RFC 2595 section 4).
          this.reader.reset();
          this.stream = 'tls';
          followUps.push({ type: 'tls-started', link: this.#opts.tlsLink ?? TLS_LINK });
          break;
        case 'commit':
          this.commits.push([...effect.deleted]);
          followUps.push({ type: 'commit-result', ok: this.#opts.commitOk ?? true });
          break;
        case 'close':
          this.closed = true;
          break;
      }
    }
    for (const next of followUps) this.apply(next, replies);
  }
}

export interface Script {
  readonly clear: string | Buffer;
  readonly tls?: string | Buffer;
}

const asBuffer = (data: string | Buffer): Buffer => (typeof data === 'string' ? Buffer.from(data, 'utf8') : data);

/** Runs a script with each stream cut at the given offsets; returns the whole server output. */
export function runScript(script: Script, cuts: { clear?: readonly number[]; tls?: readonly number[] } = {}, opts: DriverOptions = {}): Driver {
  const driver = new Driver(opts);
  for (const chunk of splitAt(asBuffer(script.clear), cuts.clear ?? [])) driver.push(chunk, 'clear');
  if (script.tls !== undefined) for (const chunk of splitAt(asBuffer(script.tls), cuts.tls ?? [])) driver.push(chunk, 'tls');
  return driver;
}

/** Cuts `data` at sorted, deduplicated offsets (empty pieces included: they must be harmless). */
export function splitAt(data: Buffer, offsets: readonly number[]): Buffer[] {
  const sorted = [...offsets].map((o) => Math.max(0, Math.min(data.length, o))).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const at of sorted) {
    pieces.push(data.subarray(from, at));
    from = at;
  }
  pieces.push(data.subarray(from));
  return pieces;
}

/** Describes effects compactly for tables: `+OK`, `-ERR`, `-ERR [AUTH]`, `+ `, `multi`, ... */
export function describe(effects: readonly Effect[]): string[] {
  return effects.map((e) => {
    switch (e.type) {
      case 'reply': {
        if (e.text.startsWith('+ ')) return '+ ';
        if (e.text.startsWith('+OK')) return '+OK';
        const code = /^-ERR \[([A-Z/-]+)\]/.exec(e.text);
        return code ? `-ERR [${code[1]}]` : '-ERR';
      }
      case 'reply-lines':
        return 'multi';
      case 'send-message':
        return `send ${e.index} ${e.bodyLines}`;
      case 'login':
        return `login ${e.mechanism}`;
      case 'start-tls':
        return 'start-tls';
      case 'commit':
        return `commit [${e.deleted.join(',')}]`;
      case 'close':
        return 'close';
    }
  });
}

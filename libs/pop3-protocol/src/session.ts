/**
 * The POP3 session as a pure function: `step(state, input) -> { state, effects }`.
 * No sockets, timers or promises here; the gateway performs the effects and feeds results back.
 */
import { parseCommand, parseDecimal, type Command } from './commands.js';

export interface MessageInfo {
  readonly uid: string;
  readonly size: number;
  /** Delivery time (ms since the epoch) when the store knows it; EXPIRE n never removes a message without one. */
  readonly received?: number;
}

export type RespCode = 'AUTH' | 'IN-USE' | 'SYS/TEMP' | 'SYS/PERM' | 'LOGIN-DELAY';

export type SaslMechanism = 'PLAIN' | 'LOGIN';

/** Per-connection facts the gateway decides. */
export interface SessionConfig {
  /** Banner timestamp (`<...>`) when APOP is offered, else null. */
  readonly apopTimestamp: string | null;
  /** Server name in the greeting and the IMPLEMENTATION capability; null hides it. */
  readonly implementation: string | null;
  /** STLS can be offered (a certificate is configured). */
  readonly tlsAvailable: boolean;
  readonly saslMechanisms: readonly SaslMechanism[];
  /** Seconds, advertised as LOGIN-DELAY; null when not configured. */
  readonly loginDelay: number | null;
  /**
   * Days or 'NEVER', advertised as EXPIRE and enforced at QUIT (RFC 2449 section 6.7): 0 removes
   * the messages retrieved in the session, n > 0 those delivered more than n days before login.
   * null when not configured.
   */
  readonly expire: number | 'NEVER' | null;
  /** Bad commands (unknown, syntax, too long) tolerated before disconnecting. */
  readonly maxBadCommands: number;
  /** Failed logins tolerated on one connection before disconnecting. */
  readonly maxAuthFailures: number;
}

/** Connection facts that change when TLS starts. */
export interface LinkState {
  readonly secure: boolean;
  /** USER/PASS, AUTH PLAIN and AUTH LOGIN may be used now. */
  readonly plaintextAllowed: boolean;
}

export type SaslState =
  | { readonly mechanism: 'PLAIN' }
  | { readonly mechanism: 'LOGIN'; readonly username: string | null };

interface Common {
  readonly config: SessionConfig;
  readonly link: LinkState;
  readonly badCommands: number;
}

export interface AuthorizationState extends Common {
  readonly phase: 'authorization';
  /** Name given by USER, waiting for PASS. */
  readonly user: string | null;
  readonly sasl: SaslState | null;
  readonly authFailures: number;
}

/** Waiting for the result of a login or STLS effect. */
export interface PendingState extends Common {
  readonly phase: 'pending-login' | 'pending-tls';
  readonly authFailures: number;
}

export interface TransactionState extends Common {
  readonly phase: 'transaction';
  readonly messages: readonly MessageInfo[];
  /** Owned by the session: 1 where message i is marked deleted. */
  readonly deleted: Uint8Array;
  /** Owned by the session: 1 where message i was sent whole (RETR, or a TOP that reached its end). */
  readonly retrieved: Uint8Array;
  /** When the maildrop was opened (ms since the epoch); the reference for EXPIRE n. Null: unknown. */
  readonly openedAt: number | null;
  readonly liveCount: number;
  readonly liveOctets: number;
}

export interface UpdateState extends Common {
  readonly phase: 'update';
  readonly liveCount: number;
}

export interface ClosedState extends Common {
  readonly phase: 'closed';
}

export type SessionState = AuthorizationState | PendingState | TransactionState | UpdateState | ClosedState;

export type Credentials =
  | { readonly kind: 'password'; readonly username: string; readonly password: string }
  | { readonly kind: 'apop'; readonly username: string; readonly digest: string };

export type LoginMechanism = 'USER' | 'APOP' | SaslMechanism;

export type LoginResult =
  | { readonly ok: true; readonly messages: readonly MessageInfo[] }
  | { readonly ok: false; readonly code: RespCode; readonly text?: string };

export type SessionInput =
  | { readonly type: 'line'; readonly line: string }
  | { readonly type: 'line-too-long' }
  /** `now`: when the maildrop was opened (ms since the epoch); without it EXPIRE n removes nothing. */
  | { readonly type: 'login-result'; readonly result: LoginResult; readonly now?: number }
  /** A `send-message` finished: `octets` canonical octets (before dot-stuffing) went out. */
  | { readonly type: 'message-sent'; readonly index: number; readonly octets: number }
  | { readonly type: 'tls-started'; readonly link: LinkState }
  | { readonly type: 'commit-result'; readonly ok: boolean }
  /** The gateway ends the session (idle timeout, shutdown, lost lease). Nothing is committed. */
  | { readonly type: 'abort'; readonly code: RespCode | null; readonly text: string };

export type Effect =
  /** A complete single-line reply, CRLF included. */
  | { readonly type: 'reply'; readonly text: string }
  /** A multi-line reply: first line, then lines (none begins with `.`), then the `.` terminator. */
  | { readonly type: 'reply-lines'; readonly first: string; readonly lines: Iterable<string> }
  | { readonly type: 'login'; readonly mechanism: LoginMechanism; readonly credentials: Credentials }
  /** After the `+OK` reply: stream message `index` (0-based) dot-stuffed, then `.`. */
  | { readonly type: 'send-message'; readonly index: number; readonly bodyLines: number | null }
  | { readonly type: 'start-tls' }
  /**
   * Remove these 0-based indexes durably and release the maildrop; answer with `commit-result`.
   * `deleted` holds the DELE'd messages and those the EXPIRE policy removes; `expired` the latter.
   */
  | { readonly type: 'commit'; readonly deleted: readonly number[]; readonly expired: readonly number[] }
  /** Close the connection; an open maildrop is released unchanged. */
  | { readonly type: 'close' };

export interface StepResult {
  readonly state: SessionState;
  readonly effects: readonly Effect[];
}

const CRLF = '\r\n';

export function ok(text: string): Effect {
  return { type: 'reply', text: text === '' ? `+OK${CRLF}` : `+OK ${text}${CRLF}` };
}

export function err(code: RespCode | null, text: string): Effect {
  return { type: 'reply', text: code === null ? `-ERR ${text}${CRLF}` : `-ERR [${code}] ${text}${CRLF}` };
}

const PLAINTEXT_REFUSED = 'Plaintext authentication disallowed on non-secure (SSL/TLS) connections.';

export function initialState(config: SessionConfig, link: LinkState): AuthorizationState {
  return { phase: 'authorization', config, link, badCommands: 0, user: null, sasl: null, authFailures: 0 };
}

/** The greeting line (RFC 1939 section 4; the APOP timestamp when offered). */
export function greeting(config: SessionConfig): Effect {
  const name = config.implementation ?? 'POP3';
  return ok(config.apopTimestamp === null ? `${name} ready.` : `${name} ready. ${config.apopTimestamp}`);
}

/** Mechanisms usable on this link now. */
export function usableMechanisms(state: { config: SessionConfig; link: LinkState }): readonly SaslMechanism[] {
  return state.link.plaintextAllowed ? state.config.saslMechanisms : [];
}

export function capabilities(state: SessionState): string[] {
  const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
  if (state.phase === 'authorization') {
    if (state.link.plaintextAllowed) caps.push('USER');
    const mechs = usableMechanisms(state);
    if (mechs.length > 0) caps.push(`SASL ${mechs.join(' ')}`);
    if (state.config.tlsAvailable && !state.link.secure) caps.push('STLS');
  }
  if (state.config.loginDelay !== null) caps.push(`LOGIN-DELAY ${state.config.loginDelay}`);
  if (state.config.expire !== null) caps.push(`EXPIRE ${state.config.expire}`);
  if (state.config.implementation !== null) caps.push(`IMPLEMENTATION ${state.config.implementation}`);
  return caps;
}

function badCommand(state: SessionState, reply: Effect): StepResult {
  const badCommands = state.badCommands + 1;
  if (badCommands >= state.config.maxBadCommands) {
    return {
      state: { ...state, phase: 'closed', badCommands } as ClosedState,
      effects: [err(null, 'Too many bad commands, closing connection.'), { type: 'close' }],
    };
  }
  return { state: { ...state, badCommands } as SessionState, effects: [reply] };
}

function stay(state: SessionState, ...effects: Effect[]): StepResult {
  return { state, effects };
}

export function step(state: SessionState, input: SessionInput): StepResult {
  switch (input.type) {
    case 'line':
      return onLine(state, input.line);
    case 'line-too-long':
      // Like a line: not an answerable command while waiting for a result or after closing.
      if (state.phase !== 'authorization' && state.phase !== 'transaction') return stay(state);
      if (state.phase === 'authorization' && state.sasl !== null) {
        return badCommand({ ...state, sasl: null }, err(null, 'Authentication line too long.'));
      }
      return badCommand(state, err(null, 'Line too long.'));
    case 'login-result':
      return onLoginResult(state, input.result, input.now ?? null);
    case 'message-sent':
      return onMessageSent(state, input.index, input.octets);
    case 'tls-started':
      // Only meaningful before login; a stale event must not revive a closed or logged-in session.
      if (state.phase !== 'pending-tls' && state.phase !== 'authorization') return stay(state);
      // RFC 2595 section 4: forget everything learned before TLS.
      return stay({
        phase: 'authorization',
        config: state.config,
        link: input.link,
        badCommands: state.badCommands,
        user: null,
        sasl: null,
        authFailures: state.authFailures,
      });
    case 'commit-result': {
      if (state.phase !== 'update') return stay(state);
      const closed: ClosedState = { phase: 'closed', config: state.config, link: state.link, badCommands: state.badCommands };
      const name = state.config.implementation ?? 'POP3';
      return input.ok
        ? stay(closed, ok(`${name} signing off (${state.liveCount} messages left).`), { type: 'close' })
        : stay(closed, err('SYS/TEMP', 'Some deleted messages not removed, try again later.'), { type: 'close' });
    }
    case 'abort': {
      if (state.phase === 'closed') return stay(state);
      const closed: ClosedState = { phase: 'closed', config: state.config, link: state.link, badCommands: state.badCommands };
      return stay(closed, err(input.code, input.text), { type: 'close' });
    }
  }
}

function onLoginResult(state: SessionState, result: LoginResult, now: number | null): StepResult {
  if (state.phase !== 'pending-login') return stay(state);
  if (result.ok) {
    let octets = 0;
    for (const m of result.messages) octets += m.size;
    const next: TransactionState = {
      phase: 'transaction',
      config: state.config,
      link: state.link,
      badCommands: state.badCommands,
      messages: result.messages,
      deleted: new Uint8Array(result.messages.length),
      retrieved: new Uint8Array(result.messages.length),
      openedAt: now,
      liveCount: result.messages.length,
      liveOctets: octets,
    };
    return stay(next, ok(`Logged in, ${result.messages.length} messages (${octets} octets).`));
  }
  const authFailures = state.authFailures + (result.code === 'AUTH' ? 1 : 0);
  const text = result.text ?? defaultFailureText(result.code);
  const back: AuthorizationState = {
    phase: 'authorization',
    config: state.config,
    link: state.link,
    badCommands: state.badCommands,
    user: null,
    sasl: null,
    authFailures,
  };
  if (authFailures >= state.config.maxAuthFailures) {
    const closed: ClosedState = { phase: 'closed', config: state.config, link: state.link, badCommands: state.badCommands };
    return stay(closed, err(result.code, `${text} Too many failures, closing connection.`), { type: 'close' });
  }
  return stay(back, err(result.code, text));
}

function defaultFailureText(code: RespCode): string {
  switch (code) {
    case 'AUTH':
      return 'Authentication failed.';
    case 'IN-USE':
      return 'Mailbox is locked by another session.';
    case 'LOGIN-DELAY':
      return 'Minimum time between logins not yet reached.';
    case 'SYS/PERM':
      return 'Mailbox unavailable.';
    case 'SYS/TEMP':
      return 'Temporary server failure, try again later.';
  }
}

function onLine(state: SessionState, line: string): StepResult {
  if (state.phase === 'authorization' && state.sasl !== null) return onSaslResponse(state, state.sasl, line);
  if (state.phase === 'closed' || state.phase === 'update' || state.phase === 'pending-login' || state.phase === 'pending-tls') {
    // The gateway does not feed lines in these phases; ignore defensively.
    return stay(state);
  }
  const parsed = parseCommand(line);
  if (!parsed.ok) {
    return badCommand(state, err(null, parsed.error === 'unknown' ? 'Unknown command.' : `Syntax error in ${parsed.keyword}.`));
  }
  const command = parsed.command;
  if (command.name === 'CAPA') {
    return stay(state, { type: 'reply-lines', first: '+OK Capability list follows', lines: capabilities(state) });
  }
  if (command.name === 'NOOP' && state.phase === 'transaction') return stay(state, ok(''));
  return state.phase === 'authorization' ? onAuthorization(state, command) : onTransaction(state as TransactionState, command);
}

function toPending(state: AuthorizationState, phase: PendingState['phase']): PendingState {
  return { phase, config: state.config, link: state.link, badCommands: state.badCommands, authFailures: state.authFailures };
}

function login(state: AuthorizationState, mechanism: LoginMechanism, credentials: Credentials): StepResult {
  return stay(toPending(state, 'pending-login'), { type: 'login', mechanism, credentials });
}

function onAuthorization(state: AuthorizationState, command: Command): StepResult {
  switch (command.name) {
    case 'USER':
      if (!state.link.plaintextAllowed) return badCommand({ ...state, user: null }, err('AUTH', PLAINTEXT_REFUSED));
      return stay({ ...state, user: command.user }, ok('Send your password.'));
    case 'PASS': {
      if (state.user === null) return badCommand(state, err(null, 'No username given, use USER first.'));
      if (!state.link.plaintextAllowed) return badCommand({ ...state, user: null }, err('AUTH', PLAINTEXT_REFUSED));
      return login(state, 'USER', { kind: 'password', username: state.user, password: command.password });
    }
    case 'APOP': {
      if (state.config.apopTimestamp === null) return badCommand(state, err(null, 'APOP not available.'));
      const digest = command.digest.toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(digest)) return badCommand(state, err(null, 'Syntax error in APOP.'));
      return login(state, 'APOP', { kind: 'apop', username: command.user, digest });
    }
    case 'AUTH':
      return onAuth(state, command.mechanism, command.initialResponse);
    case 'STLS':
      if (state.link.secure) return badCommand(state, err(null, 'TLS is already active.'));
      if (!state.config.tlsAvailable) return badCommand(state, err(null, 'STLS not available.'));
      return stay(toPending(state, 'pending-tls'), ok('Begin TLS negotiation now.'), { type: 'start-tls' });
    case 'QUIT': {
      const closed: ClosedState = { phase: 'closed', config: state.config, link: state.link, badCommands: state.badCommands };
      return stay(closed, ok(`${state.config.implementation ?? 'POP3'} signing off.`), { type: 'close' });
    }
    default:
      return badCommand(state, err(null, 'Not logged in.'));
  }
}

function onAuth(state: AuthorizationState, mechanism: string | null, initialResponse: string | null): StepResult {
  const usable = usableMechanisms(state);
  if (mechanism === null) {
    // Not in RFC 5034, but widely used by clients to list the mechanisms (RFC 1734 style).
    return stay(state, { type: 'reply-lines', first: '+OK Supported mechanisms follow', lines: usable });
  }
  if (mechanism !== 'PLAIN' && mechanism !== 'LOGIN') {
    return badCommand(state, err(null, 'Unsupported authentication mechanism.'));
  }
  if (!state.config.saslMechanisms.includes(mechanism)) {
    return badCommand(state, err(null, 'Unsupported authentication mechanism.'));
  }
  if (!usable.includes(mechanism)) return badCommand(state, err('AUTH', PLAINTEXT_REFUSED));
  const sasl: SaslState = mechanism === 'PLAIN' ? { mechanism } : { mechanism, username: null };
  if (initialResponse === null) return stay({ ...state, user: null, sasl }, continuation(sasl));
  return onSaslResponse({ ...state, user: null, sasl }, sasl, initialResponse);
}

function continuation(sasl: SaslState): Effect {
  if (sasl.mechanism === 'PLAIN') return { type: 'reply', text: `+ ${CRLF}` };
  // "Username:" / "Password:", as every LOGIN client expects.
  return { type: 'reply', text: sasl.username === null ? `+ VXNlcm5hbWU6${CRLF}` : `+ UGFzc3dvcmQ6${CRLF}` };
}

/** Strict base64 (RFC 4648 alphabet, padded); `=` alone is the empty response (RFC 5034). */
export function decodeBase64(text: string): Buffer | null {
  if (text === '=') return Buffer.alloc(0);
  if (text.length === 0 || text.length % 4 !== 0) return null;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return null;
  return Buffer.from(text, 'base64');
}

function onSaslResponse(state: AuthorizationState, sasl: SaslState, line: string): StepResult {
  const cleared: AuthorizationState = { ...state, sasl: null };
  if (line === '*') return stay(cleared, err(null, 'Authentication cancelled.'));
  const decoded = decodeBase64(line);
  if (decoded === null) return badCommand(cleared, err(null, 'Invalid base64 data.'));
  if (sasl.mechanism === 'PLAIN') {
    // authzid NUL authcid NUL passwd (RFC 4616)
    const first = decoded.indexOf(0);
    const second = first === -1 ? -1 : decoded.indexOf(0, first + 1);
    if (first === -1 || second === -1 || decoded.indexOf(0, second + 1) !== -1) {
      return badCommand(cleared, err(null, 'Malformed PLAIN response.'));
    }
    const authzid = decoded.subarray(0, first).toString('utf8');
    const username = decoded.subarray(first + 1, second).toString('utf8');
    const password = decoded.subarray(second + 1).toString('utf8');
    if (authzid !== '' && authzid !== username) {
      // No proxy authorization: fail like a wrong password, without a backend round trip.
      return onLoginResult(toPending(cleared, 'pending-login'), { ok: false, code: 'AUTH' }, null);
    }
    return login(cleared, 'PLAIN', { kind: 'password', username, password });
  }
  const value = decoded.toString('utf8');
  if (sasl.username === null) {
    const next: SaslState = { mechanism: 'LOGIN', username: value };
    return stay({ ...state, sasl: next }, continuation(next));
  }
  return login(cleared, 'LOGIN', { kind: 'password', username: sasl.username, password: value });
}

/** 0-based index of a live message, or the reply explaining why not. */
export function resolveMessageNumber(state: TransactionState, text: string): number | Effect {
  const n = parseDecimal(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > state.messages.length) return err(null, 'No such message.');
  if (state.deleted[n - 1] === 1) return err(null, `Message ${n} already deleted.`);
  return n - 1;
}

/**
 * The listing as of this command. `deleted` is updated in place by later DELE/RSET, so it is
 * copied now; the lines themselves are still produced lazily (and may be iterated again).
 */
function listLines(state: TransactionState, field: 'size' | 'uid'): Iterable<string> {
  const messages = state.messages;
  const deleted = state.deleted.slice();
  return {
    *[Symbol.iterator]() {
      for (let i = 0; i < messages.length; i++) {
        if (deleted[i] === 1) continue;
        yield `${i + 1} ${(messages[i] as MessageInfo)[field]}`;
      }
    },
  };
}

/**
 * RETR, or a TOP whose output was the whole message (its canonical size, invariant 5), counts as
 * a retrieval for EXPIRE 0. Only a completed send counts: a failed open or a dropped stream
 * never reaches here.
 */
function onMessageSent(state: SessionState, index: number, octets: number): StepResult {
  if (state.phase !== 'transaction') return stay(state);
  const message = state.messages[index];
  if (message !== undefined && octets >= message.size) state.retrieved[index] = 1;
  return stay(state);
}

const DAY_MS = 86_400_000;

/**
 * The live (not DELE'd) messages the EXPIRE policy removes at this QUIT, ascending:
 * `EXPIRE 0` the ones retrieved in this session; `EXPIRE n` the ones delivered more than n days
 * before the maildrop was opened (a message of unknown delivery time is kept). Decided only
 * here, so only a QUIT from TRANSACTION that commits removes anything (invariant 2).
 */
export function expiredAtQuit(state: TransactionState): number[] {
  const expire = state.config.expire;
  const out: number[] = [];
  if (expire === null || expire === 'NEVER') return out;
  const cutoff = expire > 0 && state.openedAt !== null ? state.openedAt - expire * DAY_MS : null;
  if (expire > 0 && cutoff === null) return out;
  for (let i = 0; i < state.messages.length; i++) {
    if (state.deleted[i] === 1) continue;
    if (expire === 0) {
      if (state.retrieved[i] === 1) out.push(i);
      continue;
    }
    const received = (state.messages[i] as MessageInfo).received;
    if (received !== undefined && cutoff !== null && received < cutoff) out.push(i);
  }
  return out;
}

function onTransaction(state: TransactionState, command: Command): StepResult {
  switch (command.name) {
    case 'STAT':
      return stay(state, ok(`${state.liveCount} ${state.liveOctets}`));
    case 'LIST':
    case 'UIDL': {
      const field = command.name === 'LIST' ? 'size' : 'uid';
      if (command.msg === null) {
        const first =
          command.name === 'LIST' ? `+OK ${state.liveCount} messages (${state.liveOctets} octets)` : '+OK Unique-ID listing follows';
        return stay(state, { type: 'reply-lines', first, lines: listLines(state, field) });
      }
      const index = resolveMessageNumber(state, command.msg);
      if (typeof index !== 'number') return stay(state, index);
      return stay(state, ok(`${index + 1} ${(state.messages[index] as MessageInfo)[field]}`));
    }
    case 'RETR': {
      const index = resolveMessageNumber(state, command.msg);
      if (typeof index !== 'number') return stay(state, index);
      return stay(state, { type: 'send-message', index, bodyLines: null });
    }
    case 'TOP': {
      const index = resolveMessageNumber(state, command.msg);
      if (typeof index !== 'number') return stay(state, index);
      const lines = parseDecimal(command.lines);
      if (Number.isNaN(lines)) return badCommand(state, err(null, 'Syntax error in TOP.'));
      return stay(state, { type: 'send-message', index, bodyLines: lines });
    }
    case 'DELE': {
      const index = resolveMessageNumber(state, command.msg);
      if (typeof index !== 'number') return stay(state, index);
      state.deleted[index] = 1;
      const size = (state.messages[index] as MessageInfo).size;
      return stay(
        { ...state, liveCount: state.liveCount - 1, liveOctets: state.liveOctets - size },
        ok(`Message ${index + 1} deleted.`),
      );
    }
    case 'RSET': {
      state.deleted.fill(0);
      let octets = 0;
      for (const m of state.messages) octets += m.size;
      const next = { ...state, liveCount: state.messages.length, liveOctets: octets };
      return stay(next, ok(`Maildrop has ${next.liveCount} messages (${octets} octets).`));
    }
    case 'QUIT': {
      const expired = expiredAtQuit(state);
      const deleted: number[] = [];
      for (let i = 0, e = 0; i < state.deleted.length; i++) {
        if (state.deleted[i] === 1) deleted.push(i);
        else if (expired[e] === i) {
          deleted.push(i);
          e++;
        }
      }
      const update: UpdateState = {
        phase: 'update',
        config: state.config,
        link: state.link,
        badCommands: state.badCommands,
        liveCount: state.liveCount - expired.length,
      };
      return stay(update, { type: 'commit', deleted, expired });
    }
    case 'USER':
    case 'PASS':
    case 'APOP':
    case 'AUTH':
      return badCommand(state, err(null, 'Already logged in.'));
    case 'STLS':
      return badCommand(state, err(null, 'STLS is only allowed before login.'));
    default:
      return badCommand(state, err(null, 'Unknown command.'));
  }
}

/**
 * One POP3 connection: pulls lines, steps the pure session, performs its effects in order.
 * Commands are handled one at a time, so pipelined replies come out in order and whole.
 */
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { isIPv4, isIPv6 } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { TLSSocket, type SecureContext } from 'node:tls';
import {
  DotStuffer,
  retrFramer,
  greeting,
  initialState,
  step,
  type Effect,
  type LinkState,
  type SessionConfig,
  type SessionInput,
  type SessionState,
} from '@postern/pop3-protocol';
import type { StoredReader } from '@postern/mailstore';
import { Metrics, type Logger, type SessionState as MetricState } from '@postern/telemetry';
import { LineSource, type Pulled } from './line-source.js';
import { performLogin, type OpenedMaildrop } from './login.js';
import type { GatewayDeps, PlaintextAuthPolicy } from './settings.js';

export interface ConnectionInfo {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly secure: boolean;
}

/** Hooks the server uses to track sessions (drain, metrics). */
export interface SessionHandle {
  /** End the session at its next command boundary with `-ERR [SYS/TEMP]`, committing nothing. */
  shutdown(): void;
  /** Drop the connection now (a session stuck writing to a client that stopped reading). */
  destroy(): void;
}

export function isLoopback(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIPv4(a)) return a.startsWith('127.');
  return isIPv6(a) && (a === '::1' || a === '0:0:0:0:0:0:0:1');
}

export function plaintextAllowed(policy: PlaintextAuthPolicy, secure: boolean, remoteAddress: string): boolean {
  if (secure || policy === 'always') return true;
  if (policy === 'never') return false;
  return isLoopback(remoteAddress);
}

/**
 * Random bytes for session ids and APOP timestamps, taken from a pool filled 4 KiB at a time:
 * one getrandom per ~290 sessions instead of two per session.
 */
const randomPool = Buffer.allocUnsafe(4096);
let randomUsed = randomPool.length;
function randomSlice(n: number): Buffer {
  if (randomUsed + n > randomPool.length) {
    randomFillSync(randomPool);
    randomUsed = 0;
  }
  randomUsed += n;
  return randomPool.subarray(randomUsed - n, randomUsed);
}

/** The abort reason when the client's socket closes: one object, not a DOMException per session. */
const SOCKET_CLOSED = new DOMException('the connection closed', 'AbortError');

const LF = 0x0a;

const COMMANDS = new Set(['USER', 'PASS', 'APOP', 'AUTH', 'STLS', 'CAPA', 'STAT', 'LIST', 'UIDL', 'RETR', 'TOP', 'DELE', 'NOOP', 'RSET', 'QUIT']);

/** A bounded metric label for a command line: its keyword, `AUTH` for SASL responses, else `unknown`. */
export function commandLabel(line: string, saslResponse: boolean): string {
  if (saslResponse) return 'AUTH';
  const space = line.indexOf(' ');
  const keyword = (space === -1 ? line : line.slice(0, space)).toUpperCase();
  return COMMANDS.has(keyword) ? keyword : 'unknown';
}

export interface SessionSummary {
  user: string | null;
  commands: number;
  retrieved: number;
  retrievedOctets: number;
  deleted: number;
  /** Of `deleted`, removed by the EXPIRE policy. */
  expired: number;
  result: string;
  /** TLS at the end of the session: implicit (995), by STLS, or none. */
  tls: 'implicit' | 'stls' | 'none';
}

export async function serveConnection(
  socket: Socket | TLSSocket,
  info: ConnectionInfo,
  deps: GatewayDeps,
  stlsContext: SecureContext | null,
  register: (handle: SessionHandle) => () => void,
): Promise<void> {
  const { settings } = deps;
  const started = Date.now();
  const log: Logger = deps.logger.child({
    session: randomSlice(6).toString('base64url'),
    ip: info.remoteAddress,
    port: info.remotePort,
  });
  const controller = new AbortController();
  const signal = controller.signal;
  let io: Duplex = socket;
  socket.setNoDelay(true);
  socket.on('error', (e) => log.debug({ err: e.message }, 'socket error'));
  socket.once('close', () => controller.abort(SOCKET_CLOSED));

  const apopTimestamp = deps.accounts.supportsApop()
    ? `<${process.pid}.${randomSlice(8).toString('hex')}.${Math.floor(started / 1000)}@postern>`
    : null;
  const config: SessionConfig = {
    apopTimestamp,
    implementation: settings.implementation,
    tlsAvailable: stlsContext !== null,
    saslMechanisms: settings.saslMechanisms,
    loginDelay: settings.loginDelay,
    expire: settings.expire,
    maxBadCommands: settings.maxBadCommands,
    maxAuthFailures: settings.maxAuthFailures,
  };
  const linkFor = (secure: boolean): LinkState => ({
    secure,
    plaintextAllowed: plaintextAllowed(settings.plaintextAuth, secure, info.remoteAddress),
  });

  let state = initialState(config, linkFor(info.secure)) as SessionState;
  let opened = null as OpenedMaildrop | null;
  let committed = false;
  let shuttingDown = false;
  const { metrics } = deps;
  const storeKind = deps.store.kind;
  let metricState: MetricState = 'authorization';
  metrics.sessionsActive.inc({ state: metricState });
  const startedAt = process.hrtime.bigint();
  const summary: SessionSummary = {
    user: null,
    commands: 0,
    retrieved: 0,
    retrievedOctets: 0,
    deleted: 0,
    expired: 0,
    result: 'disconnected',
    tls: info.secure ? 'implicit' : 'none',
  };
  const source = new LineSource(settings.maxSaslLineLength - 2);
  source.attach(socket);
  const unregister = register({
    shutdown: () => {
      shuttingDown = true;
      source.interrupt();
    },
    destroy: () => io.destroy(),
  });

  const uncork = (): void => {
    while (io.writableCorked > 0) io.uncork();
  };

  const drained = async (): Promise<void> => {
    if (!io.writableNeedDrain) return;
    await once(io, 'drain', { signal });
  };

  async function writeLines(first: string, lines: Iterable<string>): Promise<void> {
    let buffer = `${first}\r\n`;
    for (const line of lines) {
      buffer += `${line}\r\n`;
      if (buffer.length >= 16_384) {
        io.write(buffer);
        buffer = '';
        // Corked, nothing is written and 'drain' never comes: flush before waiting.
        if (io.writableNeedDrain) {
          uncork();
          await drained();
          io.cork();
        }
      }
    }
    io.write(`${buffer}.\r\n`);
  }

  function readFailed(e: unknown, index: number, reading: bigint): null {
    metrics.storeDuration.observe({ backend: storeKind, operation: 'read', result: 'error' }, Metrics.since(reading));
    const temporary = (e as { temporary?: boolean }).temporary !== false;
    log.warn({ err: (e as Error).message, index }, 'message read failed');
    io.write(temporary ? '-ERR [SYS/TEMP] Message temporarily unavailable.\r\n' : '-ERR Message no longer available.\r\n');
    return null;
  }

  function retrieved(index: number, bodyLines: number | null, octets: number): SessionInput {
    if (bodyLines === null) {
      summary.retrieved += 1;
      summary.retrievedOctets += octets;
      metrics.messagesRetrieved.inc();
      metrics.retrievedOctets.inc(octets);
    }
    return { type: 'message-sent', index, octets };
  }

  async function sendMessage(index: number, bodyLines: number | null): Promise<SessionInput | null> {
    if (!opened) return null;
    const reading = process.hrtime.bigint();
    if (bodyLines === null && opened.maildrop.openStoredSync !== undefined) {
      let stored;
      try {
        stored = opened.maildrop.openStoredSync(index);
      } catch (e) {
        return readFailed(e, index, reading);
      }
      if (stored !== undefined) return sendStored(index, stored, reading);
    }
    let body;
    try {
      body = await opened.maildrop.read(index, { bodyLines });
      metrics.storeDuration.observe({ backend: storeKind, operation: 'read', result: 'ok' }, Metrics.since(reading));
    } catch (e) {
      return readFailed(e, index, reading);
    }
    const size = opened.maildrop.messages[index]?.size ?? 0;
    // Still corked: the status line, the chunks and the terminator leave in one writev unless
    // the message spans several chunks. When the socket buffer is full, flush and wait for it to
    // drain before writing the next chunk, not before the terminator: a message that fills the
    // buffer with its last chunk still goes out in one writev with its terminator (one write and
    // one segment fewer for every message over the 16 kB high-water mark).
    io.write(bodyLines === null ? `+OK ${size} octets\r\n` : '+OK Top of message follows\r\n');
    const stuffer = new DotStuffer();
    let octets = 0;
    let full = false;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (full) {
          uncork();
          await drained();
          io.cork();
        }
        octets += chunk.length;
        full = !io.write(stuffer.push(chunk));
      }
      io.write(stuffer.finish());
    } catch (e) {
      // The +OK is out: the only honest thing left is to drop the connection.
      body.destroy();
      log.warn({ err: (e as Error).message, index }, 'message stream failed, closing connection');
      io.destroy();
      return null;
    }
    return retrieved(index, bodyLines, octets);
  }

  /**
   * RETR from a store that reads synchronously (Maildir): each chunk of the stored file is read
   * into the framer's memory and encoded in one pass (canonical line ends, dot-stuffing, and the
   * status line and terminator in the same buffer), which goes to the socket as it is; most
   * messages are one chunk and one write. The status line leaves with the first chunk, so a
   * failed first read still gets its -ERR.
   */
  async function sendStored(index: number, stored: StoredReader, reading: bigint): Promise<SessionInput | null> {
    const framer = retrFramer();
    let status = `+OK ${opened?.maildrop.messages[index]?.size ?? 0} octets\r\n`;
    let previous = LF;
    let octets = 0;
    try {
      for (;;) {
        let n: number;
        try {
          n = stored.read(framer.input);
        } catch (e) {
          if (status === '') throw e;
          return readFailed(e, index, reading);
        }
        const last = stored.done;
        const out = framer.frame(status, n, previous, last);
        if (status !== '') {
          metrics.storeDuration.observe({ backend: storeKind, operation: 'read', result: 'ok' }, Metrics.since(reading));
          status = '';
        }
        if (n > 0) previous = framer.input[n - 1] as number;
        octets += out.octets;
        const room = io.write(out.buffer, out.release);
        if (last) break;
        if (!room) {
          uncork();
          await drained();
          io.cork();
        }
      }
    } catch (e) {
      log.warn({ err: (e as Error).message, index }, 'message stream failed, closing connection');
      io.destroy();
      return null;
    } finally {
      stored.close();
    }
    return retrieved(index, null, octets);
  }

  async function perform(effect: Effect): Promise<SessionInput | null> {
    switch (effect.type) {
      case 'reply':
        io.write(effect.text);
        return null;
      case 'reply-lines':
        await writeLines(effect.first, effect.lines);
        return null;
      case 'login': {
        const outcome = await performLogin(
          {
            accounts: deps.accounts,
            locks: deps.locks,
            store: deps.store,
            apopTimestamp,
            signal,
            loginDelay:
              settings.loginDelay !== null && settings.loginDelay > 0 && deps.loginDelayGate
                ? { gate: deps.loginDelayGate, ms: settings.loginDelay * 1000 }
                : null,
            throttle: deps.loginThrottle ? { gate: deps.loginThrottle, ip: info.remoteAddress } : null,
          },
          effect.credentials,
        );
        const authResult = outcome.result.ok
          ? 'ok'
          : outcome.throttled !== null
            ? 'throttled'
            : outcome.result.code === 'AUTH'
            ? 'invalid'
            : outcome.result.code === 'LOGIN-DELAY'
              ? 'login_delay'
              : outcome.lock === null
                ? 'temporary'
                : outcome.lock === 'conflict'
                  ? 'in_use'
                  : 'error';
        metrics.authAttempts.inc({ backend: outcome.backend, mechanism: effect.mechanism, result: authResult });
        if (outcome.throttled !== null) metrics.authThrottled.inc({ reason: outcome.throttled });
        else metrics.authDuration.observe({ backend: outcome.backend }, outcome.authSeconds);
        if (outcome.lock !== null) metrics.lockAcquisitions.inc({ result: outcome.lock });
        if (outcome.openSeconds !== null) {
          const result = outcome.opened ? 'ok' : 'error';
          metrics.storeDuration.observe({ backend: storeKind, operation: 'open', result }, outcome.openSeconds);
        }
        if (outcome.opened) {
          metrics.sessionsActive.dec({ state: metricState });
          metricState = 'transaction';
          metrics.sessionsActive.inc({ state: metricState });
          opened = outcome.opened;
          summary.user = outcome.username;
          opened.lease.signal.addEventListener('abort', () => source.interrupt(), { once: true });
          log.info({ user: outcome.username, mechanism: effect.mechanism, messages: opened.maildrop.messages.length }, 'login');
        } else {
          log.info({ user: outcome.username, mechanism: effect.mechanism, reason: outcome.reason }, 'login failed');
          if (!outcome.result.ok && outcome.result.code === 'AUTH' && settings.authFailureDelayMs > 0) {
            const failures = state.phase === 'pending-login' ? state.authFailures + 1 : 1;
            uncork();
            await sleep(Math.min(settings.authFailureDelayMs * failures, 10_000), undefined, { signal });
          }
        }
        return { type: 'login-result', result: outcome.result, now: Date.now() };
      }
      case 'send-message':
        return sendMessage(effect.index, effect.bodyLines);
      case 'start-tls': {
        const secureContext = stlsContext;
        if (!secureContext) return null;
        uncork();
        source.detach();
        const tlsSocket = new TLSSocket(socket, { isServer: true, secureContext });
        tlsSocket.on('error', (e) => log.debug({ err: e.message }, 'tls error'));
        try {
          await Promise.race([
            once(tlsSocket, 'secure', { signal }),
            sleep(settings.tlsHandshakeTimeoutMs, undefined, { signal }).then(() => {
              throw new Error('TLS handshake timed out');
            }),
          ]);
        } catch (e) {
          metrics.tlsHandshakes.inc({ listener: 'stls', result: 'failed' });
          throw e;
        }
        metrics.tlsHandshakes.inc({ listener: 'stls', result: 'ok' });
        io = tlsSocket;
        source.attach(tlsSocket);
        log.debug({ protocol: tlsSocket.getProtocol() }, 'STLS');
        summary.tls = 'stls';
        return { type: 'tls-started', link: linkFor(true) };
      }
      case 'commit': {
        if (!opened) return { type: 'commit-result', ok: true };
        const committing = process.hrtime.bigint();
        try {
          await opened.maildrop.commit(effect.deleted);
          metrics.storeDuration.observe({ backend: storeKind, operation: 'commit', result: 'ok' }, Metrics.since(committing));
          committed = true;
          summary.deleted = effect.deleted.length;
          summary.expired = effect.expired.length;
          metrics.messagesDeleted.inc(effect.deleted.length);
          return { type: 'commit-result', ok: true };
        } catch (e) {
          metrics.storeDuration.observe({ backend: storeKind, operation: 'commit', result: 'error' }, Metrics.since(committing));
          log.warn({ err: (e as Error).message }, 'commit failed');
          return { type: 'commit-result', ok: false };
        }
      }
      case 'close':
        uncork();
        io.end();
        return null;
    }
  }

  async function apply(input: SessionInput): Promise<void> {
    let next: SessionInput | null = input;
    while (next) {
      const result = step(state, next);
      state = result.state;
      next = null;
      for (const effect of result.effects) {
        const followUp = await perform(effect);
        if (followUp) next = followUp;
      }
    }
  }

  function toInput(pulled: Pulled): SessionInput | null {
    switch (pulled.kind) {
      case 'line': {
        if (summary.commands === 0 && settings.proxyTrustedNetworks.length > 0 && pulled.line.startsWith('PROXY ')) {
          // A PROXY header from an address that is not a trusted balancer: a spoofing attempt.
          summary.result = 'spoofed PROXY header';
          log.warn('PROXY header from an untrusted address, closing');
          return { type: 'abort', code: null, text: 'PROXY header not accepted from your address.' };
        }
        const limit = settings.maxLineLength - 2;
        const inSasl = state.phase === 'authorization' && state.sasl !== null;
        if (!inSasl && pulled.line.length > limit / 3 && Buffer.byteLength(pulled.line) > limit) {
          if (!/^auth /i.test(pulled.line)) return { type: 'line-too-long' };
        }
        summary.commands += 1;
        return { type: 'line', line: pulled.line };
      }
      case 'too-long':
        return { type: 'line-too-long' };
      case 'timeout':
        summary.result = 'timeout';
        return { type: 'abort', code: null, text: 'Disconnected for inactivity.' };
      case 'interrupt':
        if (opened && !opened.lease.held()) {
          summary.result = 'lock lost';
          metrics.leaseLosses.inc();
          return { type: 'abort', code: 'SYS/TEMP', text: 'Maildrop lock lost, try again.' };
        }
        if (shuttingDown) {
          summary.result = 'shutdown';
          return { type: 'abort', code: 'SYS/TEMP', text: 'Server shutting down, try again.' };
        }
        return null;
      case 'end':
        return null;
    }
  }

  try {
    io.cork();
    await perform(greeting(config));
    while (state.phase !== 'closed' && !signal.aborted) {
      uncork();
      const timeout = state.phase === 'transaction' ? settings.idleTimeoutMs : settings.loginTimeoutMs;
      const pulled = await source.next(timeout);
      if (pulled.kind === 'end') break;
      const input = toInput(pulled);
      if (!input) continue;
      io.cork();
      if (input.type === 'line') {
        const label = commandLabel(input.line, state.phase === 'authorization' && state.sasl !== null);
        const begun = process.hrtime.bigint();
        await apply(input);
        metrics.commandDuration.observe({ command: label }, Metrics.since(begun));
      } else {
        await apply(input);
      }
    }
    if (state.phase === 'closed' && summary.result === 'disconnected') summary.result = committed ? 'logout' : 'closed';
  } catch (e) {
    if (!signal.aborted) log.warn({ err: (e as Error).message }, 'session error');
    summary.result = 'error';
  } finally {
    metrics.sessionsActive.dec({ state: metricState });
    metrics.sessionDuration.observe(Metrics.since(startedAt));
    unregister();
    source.detach();
    uncork();
    if (opened && !committed) {
      await opened.maildrop.close().catch((e: Error) => log.warn({ err: e.message }, 'maildrop release failed'));
    }
    if (!io.destroyed) io.end();
    log.info({ ...summary, durationMs: Date.now() - started }, 'session end');
  }
}

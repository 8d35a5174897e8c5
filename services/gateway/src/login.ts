/** The login effect: verify credentials, take the maildrop lock, snapshot the maildrop. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Account, AccountBackend, AuthResult } from '@postern/accounts';
import type { Lease, LockManager, LoginDelayGate, LoginThrottle, ThrottleReason, ThrottleVerdict } from '@postern/locks';
import type { Maildrop, MailStore } from '@postern/mailstore';
import type { Credentials, LoginResult } from '@postern/pop3-protocol';

export interface OpenedMaildrop {
  readonly account: Account;
  readonly lease: Lease;
  readonly maildrop: Maildrop;
}

export interface LoginOutcome {
  readonly result: LoginResult;
  readonly opened: OpenedMaildrop | null;
  /** Log-only detail: why it failed, which backend said so. */
  readonly reason: string;
  readonly username: string;
  /** Which backend answered, and how long verification took (for metrics). */
  readonly backend: string;
  readonly authSeconds: number;
  /** The lock attempt, when verification succeeded. */
  readonly lock: 'acquired' | 'conflict' | 'error' | null;
  /** Seconds spent opening the maildrop, when it was tried. */
  readonly openSeconds: number | null;
  /** The throttle refused the attempt (nothing was verified), and why. */
  readonly throttled: ThrottleReason | null;
}

export interface LoginContext {
  readonly accounts: AccountBackend;
  readonly locks: LockManager;
  readonly store: MailStore;
  readonly apopTimestamp: string | null;
  readonly signal: AbortSignal;
  /** RFC 2449 LOGIN-DELAY: the gate and the delay in ms, when configured. */
  readonly loginDelay: { readonly gate: LoginDelayGate; readonly ms: number } | null;
  /** Brute-force protection and the client address it counts (after the PROXY protocol). */
  readonly throttle: { readonly gate: LoginThrottle; readonly ip: string } | null;
}

async function verify(ctx: LoginContext, credentials: Credentials): Promise<AuthResult> {
  if (credentials.kind === 'password') {
    if (credentials.password.length === 0 || credentials.username.length === 0) {
      return { ok: false, failure: 'invalid', reason: 'empty username or password' };
    }
    return ctx.accounts.verifyPassword({ username: credentials.username, password: credentials.password }, ctx.signal);
  }
  if (ctx.apopTimestamp === null) return { ok: false, failure: 'invalid', reason: 'APOP not offered' };
  return ctx.accounts.verifyApop(
    { username: credentials.username, timestamp: ctx.apopTimestamp, digest: credentials.digest },
    ctx.signal,
  );
}

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

export async function performLogin(ctx: LoginContext, credentials: Credentials): Promise<LoginOutcome> {
  const username = credentials.username;
  const base = { username, backend: ctx.accounts.name, lock: null, openSeconds: null, throttled: null } as const;
  const throttle = ctx.throttle && { gate: ctx.throttle.gate, attempt: { ip: ctx.throttle.ip, username } };
  if (throttle) {
    // Before any verification: a refused attempt costs no directory bind (and so cannot add to
    // the directory's own lockout counter). A refusal looks like a wrong password (see decisions).
    let verdict: ThrottleVerdict;
    try {
      verdict = await throttle.gate.checkLogin(throttle.attempt);
    } catch (e) {
      const reason = `login throttle error: ${(e as Error).message}`;
      return { ...base, result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason, authSeconds: 0 };
    }
    if (verdict.delayMs > 0) await sleep(verdict.delayMs, undefined, { signal: ctx.signal });
    if (!verdict.allowed) {
      const reason = `throttled (${verdict.reason}), retry after ${Math.ceil(verdict.retryAfterMs / 1000)} s`;
      return { ...base, result: { ok: false, code: 'AUTH' }, opened: null, reason, authSeconds: 0, throttled: verdict.reason };
    }
  }
  const started = process.hrtime.bigint();
  let auth: AuthResult;
  try {
    auth = await verify(ctx, credentials);
  } catch (e) {
    const reason = `auth backend error: ${(e as Error).message}`;
    return { ...base, result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason, authSeconds: seconds(started) };
  }
  const authSeconds = seconds(started);
  if (throttle && auth.ok) {
    // Not awaited: the answer stands whatever becomes of it, and the lock request below leaves
    // in the same tick (one IPC message for both on a multi-process node; in order on the same
    // Redis connection in cluster mode).
    throttle.gate.recordSuccess(throttle.attempt).catch(() => undefined);
  } else if (throttle && !auth.ok && auth.failure !== 'temporary') {
    // The answer stands even if recording fails; the log line says so.
    const problem = await throttle.gate.recordFailure(throttle.attempt).then(
      () => null,
      (e: Error) => `; login throttle not updated: ${e.message}`,
    );
    if (problem !== null) auth = { ...auth, reason: auth.reason + problem };
  }
  if (!auth.ok) {
    const code = auth.failure === 'temporary' ? 'SYS/TEMP' : 'AUTH';
    return { ...base, result: { ok: false, code }, opened: null, reason: `${auth.failure}: ${auth.reason}`, authSeconds };
  }
  const account = auth.account;
  const known = { ...base, backend: account.backend, authSeconds };
  let lease: Lease | null;
  try {
    lease = await ctx.locks.acquire(`maildrop:${account.mailboxId}`);
  } catch (e) {
    const reason = `lock backend error: ${(e as Error).message}`;
    return { ...known, result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason, lock: 'error' };
  }
  if (lease === null) {
    const reason = 'maildrop locked by another session';
    return { ...known, result: { ok: false, code: 'IN-USE' }, opened: null, reason, lock: 'conflict' };
  }
  if (ctx.loginDelay) {
    // Checked while holding the maildrop lock, so two logins cannot both pass.
    let admitted: boolean;
    try {
      admitted = await ctx.loginDelay.gate.admit(account.mailboxId, ctx.loginDelay.ms);
    } catch (e) {
      await lease.release().catch(() => undefined);
      return { ...known, result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason: `login-delay check failed: ${(e as Error).message}`, lock: 'acquired' };
    }
    if (!admitted) {
      await lease.release().catch(() => undefined);
      return { ...known, result: { ok: false, code: 'LOGIN-DELAY' }, opened: null, reason: 'login within LOGIN-DELAY of the last one', lock: 'acquired' };
    }
  }
  const opening = process.hrtime.bigint();
  try {
    const maildrop = await ctx.store.open({ id: account.mailboxId, username: account.username }, lease, ctx.signal);
    return {
      ...known,
      result: { ok: true, messages: maildrop.messages },
      opened: { account, lease, maildrop },
      reason: 'ok',
      username: account.username,
      lock: 'acquired',
      openSeconds: seconds(opening),
    };
  } catch (e) {
    const openSeconds = seconds(opening);
    await lease.release().catch(() => undefined);
    const temporary = (e as { temporary?: boolean }).temporary !== false;
    return {
      ...known,
      result: { ok: false, code: temporary ? 'SYS/TEMP' : 'SYS/PERM' },
      opened: null,
      reason: `store error: ${(e as Error).message}`,
      lock: 'acquired',
      openSeconds,
    };
  }
}

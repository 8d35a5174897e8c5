/** The login effect: verify credentials, take the maildrop lock, snapshot the maildrop. */
import type { Account, AccountBackend, AuthResult } from '@postern/accounts';
import type { Lease, LockManager } from '@postern/locks';
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
}

export interface LoginContext {
  readonly accounts: AccountBackend;
  readonly locks: LockManager;
  readonly store: MailStore;
  readonly apopTimestamp: string | null;
  readonly signal: AbortSignal;
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

export async function performLogin(ctx: LoginContext, credentials: Credentials): Promise<LoginOutcome> {
  const username = credentials.username;
  let auth: AuthResult;
  try {
    auth = await verify(ctx, credentials);
  } catch (e) {
    return { result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason: `auth backend error: ${(e as Error).message}`, username };
  }
  if (!auth.ok) {
    const code = auth.failure === 'temporary' ? 'SYS/TEMP' : 'AUTH';
    return { result: { ok: false, code }, opened: null, reason: `${auth.failure}: ${auth.reason}`, username };
  }
  const account = auth.account;
  let lease: Lease | null;
  try {
    lease = await ctx.locks.acquire(`maildrop:${account.mailboxId}`);
  } catch (e) {
    return { result: { ok: false, code: 'SYS/TEMP' }, opened: null, reason: `lock backend error: ${(e as Error).message}`, username };
  }
  if (lease === null) {
    return { result: { ok: false, code: 'IN-USE' }, opened: null, reason: 'maildrop locked by another session', username };
  }
  try {
    const maildrop = await ctx.store.open({ id: account.mailboxId, username: account.username }, lease, ctx.signal);
    return {
      result: { ok: true, messages: maildrop.messages },
      opened: { account, lease, maildrop },
      reason: 'ok',
      username: account.username,
    };
  } catch (e) {
    await lease.release().catch(() => undefined);
    const temporary = (e as { temporary?: boolean }).temporary !== false;
    return {
      result: { ok: false, code: temporary ? 'SYS/TEMP' : 'SYS/PERM' },
      opened: null,
      reason: `store error: ${(e as Error).message}`,
      username,
    };
  }
}

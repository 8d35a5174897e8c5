/**
 * ChainBackend: several account backends asked in order (for example a local passwd-file for
 * staff in front of the ISP directory).
 *
 * Password and APOP verification stop at the first definite answer:
 * - success from any backend wins;
 * - 'refused' ends the chain (the account exists there);
 * - 'invalid' ends the chain only when that backend confirms through `hasLogin()` that it holds
 *   the user (so it was the wrong password); otherwise the user is unknown there and the next
 *   backend is asked. Backends without `hasLogin()` always fall through.
 * - 'temporary' (or a thrown error) is remembered and the next backend is asked; if no later
 *   backend accepts, the result is 'temporary', never 'invalid' (the one that failed might
 *   have said yes).
 *
 * Recipient lookup takes the first backend that knows the address; an error from a backend
 * stops the walk (it is thrown) rather than risk delivering to a later backend's mailbox of the
 * same name.
 */
import { AccountsError, abortReason } from './errors.js';
import type { Account, AccountBackend, ApopCredentials, AuthResult, PasswordCredentials } from './types.js';

export interface ChainBackendOptions {
  /** Default `chain`. Accounts keep the name of the backend that resolved them. */
  readonly name?: string;
}

const NO_BACKEND: AuthResult = Object.freeze({ ok: false, failure: 'invalid', reason: 'unknown user or wrong password' });

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class ChainBackend implements AccountBackend {
  readonly name: string;
  readonly backends: readonly AccountBackend[];
  /** Present when every backend in the chain has it. */
  readonly hasLogin?: (username: string, signal?: AbortSignal) => Promise<boolean>;

  constructor(backends: readonly AccountBackend[], options: ChainBackendOptions = {}) {
    if (backends.length === 0) throw new RangeError('ChainBackend needs at least one backend');
    this.backends = [...backends];
    this.name = options.name ?? 'chain';
    if (this.backends.every((b) => b.hasLogin !== undefined)) {
      this.hasLogin = async (username, signal) => {
        for (const b of this.backends) if (await b.hasLogin!(username, signal)) return true;
        return false;
      };
    }
  }

  verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    return this.walk(this.backends, credentials.username, (b) => b.verifyPassword(credentials, signal), signal);
  }

  supportsApop(): boolean {
    return this.backends.some((b) => b.supportsApop());
  }

  verifyApop(credentials: ApopCredentials, signal?: AbortSignal): Promise<AuthResult> {
    const able = this.backends.filter((b) => b.supportsApop());
    return this.walk(able, credentials.username, (b) => b.verifyApop(credentials, signal), signal);
  }

  async lookup(address: string, signal?: AbortSignal): Promise<Account | null> {
    for (const b of this.backends) {
      if (signal?.aborted) throw abortReason(signal);
      let account: Account | null;
      try {
        account = await b.lookup(address, signal);
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        throw new AccountsError('unavailable', `${b.name}: lookup failed: ${message(e)}`, { cause: e });
      }
      if (account !== null) return account;
    }
    return null;
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled(this.backends.map((b) => b.close?.()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async walk(
    backends: readonly AccountBackend[],
    username: string,
    call: (b: AccountBackend) => Promise<AuthResult>,
    signal: AbortSignal | undefined,
  ): Promise<AuthResult> {
    let temporary: AuthResult | null = null;
    let invalid: AuthResult | null = null;
    const noteTemporary = (b: AccountBackend, reason: string): void => {
      temporary ??= { ok: false, failure: 'temporary', reason: `${b.name}: ${reason}` };
    };
    for (const b of backends) {
      if (signal?.aborted) throw abortReason(signal);
      let result: AuthResult;
      try {
        result = await call(b);
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        noteTemporary(b, message(e));
        continue;
      }
      if (result.ok) return result;
      if (result.failure === 'temporary') {
        noteTemporary(b, result.reason);
        continue;
      }
      if (result.failure === 'refused') return temporary ?? result;
      invalid ??= result;
      if (b.hasLogin !== undefined) {
        try {
          if (await b.hasLogin(username, signal)) return temporary ?? result;
        } catch (e) {
          if (signal?.aborted) throw abortReason(signal);
          noteTemporary(b, message(e));
        }
      }
    }
    return temporary ?? invalid ?? NO_BACKEND;
  }
}

/**
 * PamBackend: Linux system accounts through PAM, without native addons. Each password check runs
 * Debian's `pamtester <service> <user> authenticate acct_mgmt` with the password on stdin (the
 * libpam_misc conversation reads one line from a non-terminal stdin), in a bounded pool.
 *
 * Rules (see README.md):
 * - Users come from NSS (`getent passwd`), so /etc/passwd, sssd or LDAP-backed NSS all work.
 *   Only UIDs in [minUid, maxUid] may log in or receive mail: root, daemons and `nobody` never.
 * - `mailboxId` is `pam:<uid>`: a rename (`usermod -l`) keeps the mailbox. A deleted user's UID
 *   given to a new user gives them the old mailbox too; remove the mail when removing a user.
 * - Unknown user, UID out of range, wrong password and locked account give the same result, and
 *   every failure is answered no earlier than `failureDelayMs` after the request started, so
 *   timing tells nothing either (pam_unix answers an unknown user without hashing). Expired
 *   accounts and required password changes are 'refused' (same client reply, different log).
 * - A check that takes longer than `timeoutMs` is killed and answers 'temporary'.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { AccountsError, abortReason } from './errors.js';
import { TtlLru } from './ttl-lru.js';
import type { Account, AccountBackend, ApopCredentials, AuthResult, PasswordCredentials } from './types.js';

export interface PamBackendOptions {
  /** PAM service (a file in /etc/pam.d; PAM falls back to `other` without one). Default `postern`. */
  readonly service?: string;
  /** Lowest UID that may log in or receive mail. Default 1000. */
  readonly minUid?: number;
  /** Highest such UID. Default 60000 (Debian's UID_MAX; `nobody` is 65534). */
  readonly maxUid?: number;
  /** pamtester processes at once. Default: one per CPU, at least 2. */
  readonly concurrency?: number;
  /** Checks waiting for a slot before new ones answer 'temporary'. Default 256. */
  readonly maxQueue?: number;
  /** Kill a check after this long and answer 'temporary'. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /**
   * Every failure is answered this long after the request started, at the earliest. It must
   * exceed the service's slowest failure (pam_unix without `nodelay` waits 1 to 3 s), or unknown
   * users answer faster than wrong passwords; a warning says when a failure took longer.
   * Default 2000 ms.
   */
  readonly failureDelayMs?: number;
  /** Reported as `Account.backend`; default `pam`. */
  readonly name?: string;
  /** Domains for which `local@domain` resolves to the system user `local`. Default: any. */
  readonly localDomains?: readonly string[];
  /** How long a `getent` answer (found or not) is reused. Default 5000 ms; 0 turns it off. */
  readonly userCacheMs?: number;
  /** Programs (tests, other paths). Defaults `pamtester` and `getent` from PATH. */
  readonly pamtester?: string;
  readonly getent?: string;
  /** Slow checks and other operator-facing problems. Default: process.emitWarning. */
  readonly onWarning?: (message: string) => void;
}

/** The public config keys (services map these onto the options). */
export interface PamConfigKeys {
  readonly PAM_SERVICE: string;
  readonly PAM_MIN_UID: number;
  readonly PAM_FAILURE_DELAY_MS: number;
  readonly PAM_TIMEOUT_MS: number;
  readonly PAM_CONCURRENCY?: number | undefined;
}

export function pamOptionsFromConfig(c: PamConfigKeys): PamBackendOptions {
  return {
    service: c.PAM_SERVICE,
    minUid: c.PAM_MIN_UID,
    failureDelayMs: c.PAM_FAILURE_DELAY_MS,
    timeoutMs: c.PAM_TIMEOUT_MS,
    ...(c.PAM_CONCURRENCY === undefined ? {} : { concurrency: c.PAM_CONCURRENCY }),
  };
}

interface SystemUser {
  readonly name: string;
  readonly uid: number;
}

type PamOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'invalid' | 'refused' | 'temporary'; readonly reason: string };

const INVALID: AuthResult = Object.freeze({ ok: false, failure: 'invalid', reason: 'unknown user or wrong password' });
const EMPTY_PASSWORD: AuthResult = Object.freeze({ ok: false, failure: 'invalid', reason: 'empty password' });
/** pam_unix refuses longer passwords (PAM_MAX_RESP_SIZE); we do so before starting anything. */
const MAX_PASSWORD_BYTES = 512;
/** Portable system user names: no leading digit or dash (getent would take digits as a UID). */
const USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;
/** pam_strerror texts (LC_ALL=C) that mean "no": wrong password, unknown or locked user. */
const AUTH_DENIED = new Set([
  'Authentication failure',
  'User not known to the underlying authentication module',
  'Permission denied',
  'Insufficient credentials to access authentication data',
  'Have exhausted maximum number of retries for service.',
]);
const OUTPUT_LIMIT = 16 * 1024;

function defaultWarning(message: string): void {
  process.emitWarning(message, { code: 'POSTERN_PAM' });
}

/** The last `pamtester: <message>` line of its stderr. */
function pamMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.replace(/^Password: /, '').trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^pamtester: (.+)$/.exec(lines[i]!);
    if (m) return m[1]!;
  }
  return stderr.trim().slice(-200) || 'no output';
}

/** Runs `program args` with `input` on stdin; bounded output, killed at the deadline or on abort. */
function run(
  program: string,
  args: readonly string[],
  input: string | null,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', LANG: 'C' },
      stdio: [input === null ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const collect = (which: 'out' | 'err') => (d: Buffer) => {
      if (which === 'out' && stdout.length < OUTPUT_LIMIT) stdout += d.toString('utf8');
      if (which === 'err' && stderr.length < OUTPUT_LIMIT) stderr += d.toString('utf8');
    };
    child.stdout!.on('data', collect('out'));
    child.stderr!.on('data', collect('err'));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.once('error', (e) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(abortReason(signal));
      else resolve({ code, stdout, stderr, timedOut });
    });
    if (input !== null) {
      // The child may exit before reading (bad service file): ignore EPIPE.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    }
  });
}

/** A counting semaphore with a bounded queue. */
class Slots {
  #active = 0;
  readonly #waiting: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  constructor(
    private readonly size: number,
    private readonly maxQueue: number,
  ) {}

  async take(signal: AbortSignal | undefined): Promise<() => void> {
    if (this.#active < this.size) {
      this.#active++;
      return () => this.#give();
    }
    if (this.#waiting.length >= this.maxQueue) throw new AccountsError('busy', `PAM: ${this.maxQueue} checks already waiting`);
    await new Promise<void>((resolve, reject) => {
      const entry = { resolve, reject };
      this.#waiting.push(entry);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.#waiting.indexOf(entry);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(abortReason(signal));
        },
        { once: true },
      );
    });
    return () => this.#give();
  }

  #give(): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(); // the slot passes on; #active unchanged
    else this.#active--;
  }
}

export class PamBackend implements AccountBackend {
  readonly name: string;
  readonly service: string;
  readonly minUid: number;
  readonly maxUid: number;
  private readonly slots: Slots;
  private readonly timeoutMs: number;
  private readonly failureDelayMs: number;
  private readonly localDomains: ReadonlySet<string> | null;
  private readonly users: TtlLru<SystemUser | null>;
  private readonly userCacheMs: number;
  private readonly pamtester: string;
  private readonly getent: string;
  private readonly warn: (message: string) => void;
  private slowWarned = false;

  constructor(options: PamBackendOptions = {}) {
    this.name = options.name ?? 'pam';
    this.service = options.service ?? 'postern';
    if (!/^[A-Za-z0-9_.-]+$/.test(this.service)) throw new RangeError(`PAM_SERVICE: not a PAM service name: ${JSON.stringify(this.service)}`);
    this.minUid = options.minUid ?? 1000;
    this.maxUid = options.maxUid ?? 60_000;
    if (!Number.isSafeInteger(this.minUid) || this.minUid < 1) throw new RangeError('PAM_MIN_UID: must be a whole number >= 1 (root may never log in)');
    this.slots = new Slots(Math.max(1, options.concurrency ?? Math.max(2, availableParallelism())), options.maxQueue ?? 256);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.failureDelayMs = options.failureDelayMs ?? 2_000;
    this.localDomains = options.localDomains ? new Set(options.localDomains.map((d) => d.toLowerCase())) : null;
    this.userCacheMs = options.userCacheMs ?? 5_000;
    this.users = new TtlLru(this.userCacheMs > 0 ? 10_000 : 0);
    this.pamtester = options.pamtester ?? 'pamtester';
    this.getent = options.getent ?? 'getent';
    this.warn = options.onWarning ?? defaultWarning;
  }

  async verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    if (signal?.aborted) throw abortReason(signal);
    const started = performance.now();
    const { password } = credentials;
    if (password.length === 0) return EMPTY_PASSWORD;
    const fail = async (result: AuthResult): Promise<AuthResult> => {
      // Timers count from the event loop's cached clock and may fire a few ms early: re-check.
      for (let left = this.failureDelayMs - (performance.now() - started); left > 0; left = this.failureDelayMs - (performance.now() - started)) {
        await sleep(Math.ceil(left), undefined, { signal });
      }
      return result;
    };
    // One line on stdin: a line break would end the password early; NUL cannot cross PAM.
    if (/[\r\n\0]/.test(password) || Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return fail(INVALID);
    let user: SystemUser | null;
    try {
      user = await this.resolve(credentials.username, signal);
    } catch (e) {
      if (signal?.aborted) throw abortReason(signal);
      return { ok: false, failure: 'temporary', reason: `user lookup failed: ${(e as Error).message}` };
    }
    if (user === null) return fail({ ok: false, failure: 'invalid', reason: 'unknown user or UID outside PAM_MIN_UID..max' });
    let outcome: PamOutcome;
    try {
      outcome = await this.authenticate(user.name, password, signal);
    } catch (e) {
      if (signal?.aborted) throw abortReason(signal);
      return { ok: false, failure: 'temporary', reason: `PAM: ${(e as Error).message}` };
    }
    if (outcome.kind === 'ok') return { ok: true, account: this.account(user) };
    if (outcome.kind === 'temporary') return { ok: false, failure: 'temporary', reason: `PAM: ${outcome.reason}` };
    const elapsed = performance.now() - started;
    if (elapsed > this.failureDelayMs && !this.slowWarned) {
      this.slowWarned = true;
      this.warn(
        `PAM service ${this.service}: a failed check took ${Math.round(elapsed)} ms, more than PAM_FAILURE_DELAY_MS ` +
          `(${this.failureDelayMs}); unknown users are answered faster than wrong passwords. Raise it, or use pam_unix nodelay.`,
      );
    }
    return fail({ ok: false, failure: outcome.kind, reason: `PAM: ${outcome.reason}` });
  }

  supportsApop(): boolean {
    return false;
  }

  async verifyApop(_credentials: ApopCredentials, signal?: AbortSignal): Promise<AuthResult> {
    if (signal?.aborted) throw abortReason(signal);
    return INVALID;
  }

  /** `user` or `user@domain` (for localDomains, or any domain) to the system user `user`. */
  async lookup(address: string, signal?: AbortSignal): Promise<Account | null> {
    let a = address.trim();
    if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim();
    const at = a.lastIndexOf('@');
    if (at === 0) return null;
    if (at > 0) {
      if (this.localDomains !== null && !this.localDomains.has(a.slice(at + 1).toLowerCase())) return null;
      a = a.slice(0, at);
    }
    const user = await this.resolve(a, signal);
    return user === null ? null : this.account(user);
  }

  /** Whether `username` is a system user in the UID range (for ChainBackend). */
  async hasLogin(username: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.resolve(username, signal)) !== null;
  }

  async close(): Promise<void> {
    this.users.clear();
  }

  private account(user: SystemUser): Account {
    return { username: user.name, mailboxId: `pam:${user.uid}`, backend: this.name };
  }

  /** The system user for a login name (as given, else lower-cased), in the UID range; else null. */
  private async resolve(username: string, signal: AbortSignal | undefined): Promise<SystemUser | null> {
    if (!USER_NAME.test(username)) return null;
    const exact = await this.getentUser(username, signal);
    const user = exact ?? (username.toLowerCase() !== username ? await this.getentUser(username.toLowerCase(), signal) : null);
    return user !== null && user.uid >= this.minUid && user.uid <= this.maxUid ? user : null;
  }

  private async getentUser(name: string, signal: AbortSignal | undefined): Promise<SystemUser | null> {
    const now = Date.now();
    const cached = this.users.get(name, now);
    if (cached !== undefined) return cached;
    const r = await run(this.getent, ['passwd', '--', name], null, this.timeoutMs, signal);
    if (r.timedOut) throw new AccountsError('unavailable', `getent passwd did not answer within ${this.timeoutMs} ms`);
    let user: SystemUser | null = null;
    if (r.code === 0) {
      const fields = r.stdout.split('\n')[0]!.split(':');
      const uid = Number(fields[2]);
      // NSS must answer for this exact name (getent also takes numbers, which USER_NAME excludes).
      if (fields.length >= 7 && fields[0] === name && Number.isSafeInteger(uid)) user = { name, uid };
    } else if (r.code !== 2) {
      throw new AccountsError('unavailable', `getent passwd failed (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`);
    }
    this.users.set(name, user, now + this.userCacheMs);
    return user;
  }

  private async authenticate(user: string, password: string, signal: AbortSignal | undefined): Promise<PamOutcome> {
    const release = await this.slots.take(signal);
    let r;
    try {
      r = await run(this.pamtester, ['--', this.service, user, 'authenticate', 'acct_mgmt'], `${password}\n`, this.timeoutMs, signal);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { kind: 'temporary', reason: `${this.pamtester} not found (Debian package pamtester)` };
      throw e;
    } finally {
      release();
    }
    if (r.timedOut) return { kind: 'temporary', reason: `no answer within ${this.timeoutMs} ms (service ${this.service})` };
    const authenticated = r.stdout.includes('successfully authenticated');
    if (r.code === 0 && authenticated && r.stdout.includes('account management done')) return { kind: 'ok' };
    const message = pamMessage(r.stderr);
    // The password was right but the account may not be used (expired, must change password).
    if (authenticated) return { kind: 'refused', reason: `account: ${message}` };
    if (r.code === 1 && AUTH_DENIED.has(message)) return { kind: 'invalid', reason: message };
    return { kind: 'temporary', reason: `pamtester exit ${r.code}: ${message}` };
  }
}

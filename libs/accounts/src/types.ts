/** A resolved account: who logged in and which mailbox is theirs. */
export interface Account {
  /** Canonical login name (as stored by the backend). */
  readonly username: string;
  /** Stable mailbox identity (survives renames where the backend can tell). */
  readonly mailboxId: string;
  /** Name of the backend that resolved it (`passwd-file`, `ldap`, ...). */
  readonly backend: string;
  /** Per-account mailbox quota; a limit left out here falls back to the service default. */
  readonly quota?: Quota;
}

/** Mailbox limits (the same shape as the mail store's `Quota`); 0 means no limit. */
export interface Quota {
  readonly maxOctets?: number;
  readonly maxMessages?: number;
}

export type AuthFailure =
  /** Unknown user or wrong password: the client cannot tell which. */
  | 'invalid'
  /** Account exists but may not log in (disabled, locked, expired). */
  | 'refused'
  /** Backend unavailable: the client gets [SYS/TEMP]. */
  | 'temporary';

export type AuthResult =
  | { readonly ok: true; readonly account: Account }
  | { readonly ok: false; readonly failure: AuthFailure; /** For the log only, never the client. */ readonly reason: string };

export interface PasswordCredentials {
  readonly username: string;
  readonly password: string;
}

export interface ApopCredentials {
  readonly username: string;
  /** The banner timestamp, e.g. `<1896.697170952@dbc.mtview.ca.us>`. */
  readonly timestamp: string;
  /** Lower-case hex MD5 digest sent by the client. */
  readonly digest: string;
}

export interface AccountBackend {
  readonly name: string;
  /** Verify a plaintext password (USER/PASS, AUTH PLAIN, AUTH LOGIN). */
  verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult>;
  /** True when APOP can be verified for at least some accounts (plaintext-equivalent secrets). */
  supportsApop(): boolean;
  verifyApop(credentials: ApopCredentials, signal?: AbortSignal): Promise<AuthResult>;
  /** Resolve a recipient address or login name for delivery; null when unknown. */
  lookup(address: string, signal?: AbortSignal): Promise<Account | null>;
  /**
   * Optional: whether `username` is a login name this backend holds. ChainBackend uses it to
   * tell "wrong password here" (a definite answer) from "not ours" (ask the next backend);
   * without it, an 'invalid' answer falls through to the next backend.
   */
  hasLogin?(username: string, signal?: AbortSignal): Promise<boolean>;
  close?(): Promise<void>;
}

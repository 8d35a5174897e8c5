import type { Account, AccountBackend, ApopCredentials, AuthResult, PasswordCredentials } from '../src/index.js';

/** A scriptable backend for cache and chain tests. */
export class FakeBackend implements AccountBackend {
  readonly calls: PasswordCredentials[] = [];
  /** user -> password */
  readonly users = new Map<string, string>();
  /** When set, every verification answers this. */
  answer: AuthResult | Error | null = null;
  /** Resolve verifications only when released (to test concurrency). */
  gate: Promise<void> | null = null;
  lastSignal: AbortSignal | undefined;
  hasLogin?: (username: string) => Promise<boolean>;
  close?: () => Promise<void>;

  constructor(readonly name: string, users: Record<string, string> = {}, options: { hasLogin?: boolean } = {}) {
    for (const [u, p] of Object.entries(users)) this.users.set(u, p);
    if (options.hasLogin ?? true) this.hasLogin = async (u) => this.users.has(u);
  }

  account(username: string): Account {
    return { username, mailboxId: `${this.name}/${username}`, backend: this.name };
  }

  async verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    this.calls.push(credentials);
    this.lastSignal = signal;
    if (this.gate) await this.gate;
    signal?.throwIfAborted();
    if (this.answer instanceof Error) throw this.answer;
    if (this.answer) return this.answer;
    const pw = this.users.get(credentials.username);
    if (pw !== undefined && pw === credentials.password) return { ok: true, account: this.account(credentials.username) };
    return { ok: false, failure: 'invalid', reason: 'unknown user or wrong password' };
  }

  supportsApop(): boolean {
    return false;
  }

  async verifyApop(_c: ApopCredentials): Promise<AuthResult> {
    return { ok: false, failure: 'invalid', reason: 'no apop' };
  }

  async lookup(address: string): Promise<Account | null> {
    if (this.answer instanceof Error) throw this.answer;
    return this.users.has(address) ? this.account(address) : null;
  }
}

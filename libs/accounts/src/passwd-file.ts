/**
 * PasswdFileBackend: accounts from a Dovecot-format passwd-file, reloaded when it changes.
 *
 * Rules (see README.md):
 * - Login names match case-insensitively; `mailboxId` is the user name lower-cased.
 * - Unknown user and wrong password give the same result, after the same work: an unknown
 *   user is verified against a dummy hash with the cost of the file's most common scheme.
 * - Recipient lookup: exact match on the whole address, else (for `local@domain`) the local
 *   part against users listed without a domain, optionally only for `localDomains`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { AccountsError, abortReason } from './errors.js';
import { parsePasswdLine, splitLines, userKey } from './passwd-format.js';
import { parseQuotaRules } from './quota-rule.js';
import { costProfile, defaultDummyHash, dummyHashLike, parsePasswordHash, plaintextOf, type ParsedHash } from './schemes.js';
import type { PasswordVerifier } from './verifier.js';
import { VerifierPool } from './verify-pool.js';
import type { Account, AccountBackend, ApopCredentials, AuthResult, PasswordCredentials } from './types.js';

export interface PasswdFileWarning {
  readonly file: string;
  /** 1-based line number, or null for a warning about the whole file. */
  readonly line: number | null;
  /** `file:line: problem`, ready to log. Never contains a password or hash. */
  readonly message: string;
}

export interface PasswdFileReload {
  readonly file: string;
  /** Users loaded. */
  readonly users: number;
  /** Lines skipped as malformed. */
  readonly skipped: number;
}

export interface PasswdFileBackendOptions {
  readonly path: string;
  /** Reported as `Account.backend`; default `passwd-file`. */
  readonly name?: string;
  /**
   * Who checks passwords. Default: a VerifierPool with default options, owned by the backend
   * and closed by `close()`. Pass one to share a pool between backends.
   */
  readonly verifier?: PasswordVerifier;
  /**
   * Domains for which `local@domain` may resolve to a user listed without a domain. Default:
   * any domain (the MTA decides which domains reach us).
   */
  readonly localDomains?: readonly string[];
  /** Watch the directory for changes (default true). The stat check below runs regardless. */
  readonly watch?: boolean;
  /** At most this often, a lookup stats the file and reloads it if it changed. Default 1000 ms. */
  readonly recheckIntervalMs?: number;
  /** Verify unknown users against this stored hash instead of one derived from the file. */
  readonly dummyHash?: string;
  /** Malformed lines, unsupported schemes, unreadable file. Default: process.emitWarning. */
  readonly onWarning?: (warning: PasswdFileWarning) => void;
  /** After each successful (re)load, e.g. to clear a CredentialCache. */
  readonly onReload?: (info: PasswdFileReload) => void;
  /** Clock for the recheck interval (tests). */
  readonly now?: () => number;
}

interface Entry {
  readonly key: string;
  /** The raw password field, for the verifier. */
  readonly stored: string;
  /** null: no password, or one we cannot verify; the user can receive mail but not log in. */
  readonly parsed: ParsedHash | null;
  readonly plaintext: string | null;
  readonly nologin: boolean;
  readonly account: Account;
}

interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

interface Snapshot {
  readonly byKey: ReadonlyMap<string, Entry>;
  /** Stored hash verified for unknown users and users without a usable password. */
  readonly dummy: string;
  readonly apop: boolean;
  /** null when the file did not exist. */
  readonly identity: FileIdentity | null;
}

/** The one failure both "no such user" and "wrong password" produce. */
const INVALID: AuthResult = Object.freeze({ ok: false, failure: 'invalid', reason: 'unknown user or wrong password' });
const EMPTY_PASSWORD: AuthResult = Object.freeze({ ok: false, failure: 'invalid', reason: 'empty password' });

function sameIdentity(a: FileIdentity | null, b: FileIdentity | null): boolean {
  if (a === null || b === null) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

function identityOf(st: { dev: number; ino: number; size: number; mtimeMs: number; ctimeMs: number }): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

function defaultWarning(w: PasswdFileWarning): void {
  process.emitWarning(w.message, { code: 'POSTERN_PASSWD_FILE' });
}

export class PasswdFileBackend implements AccountBackend {
  readonly name: string;
  /** Absolute path of the file. */
  readonly path: string;
  private readonly verifier: PasswordVerifier;
  private readonly ownsVerifier: boolean;
  private readonly localDomains: ReadonlySet<string> | null;
  private readonly recheckMs: number;
  private readonly fixedDummy: string | null;
  private readonly warn: (w: PasswdFileWarning) => void;
  private readonly onReload: ((info: PasswdFileReload) => void) | undefined;
  private readonly now: () => number;
  private readonly apopDummy = randomBytes(18).toString('base64');
  private snapshot: Snapshot | null = null;
  private lastCheck = 0;
  private loading: Promise<void> | null = null;
  private loadAgain = false;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private lastFileProblem: string | null = null;
  private skippedLastParse = 0;
  private closed = false;

  /** Load the file (a missing file counts as empty, with a warning) and start watching it. */
  static async open(options: PasswdFileBackendOptions): Promise<PasswdFileBackend> {
    const backend = new PasswdFileBackend(options);
    try {
      await backend.reload();
      backend.lastCheck = backend.now();
      if (options.watch ?? true) backend.startWatching();
    } catch (e) {
      await backend.close();
      throw e;
    }
    return backend;
  }

  private constructor(options: PasswdFileBackendOptions) {
    this.name = options.name ?? 'passwd-file';
    this.path = resolve(options.path);
    this.ownsVerifier = options.verifier === undefined;
    this.verifier = options.verifier ?? new VerifierPool();
    this.localDomains = options.localDomains ? new Set(options.localDomains.map((d) => d.toLowerCase())) : null;
    this.recheckMs = options.recheckIntervalMs ?? 1000;
    if (options.dummyHash !== undefined) parsePasswordHash(options.dummyHash);
    this.fixedDummy = options.dummyHash ?? null;
    this.warn = options.onWarning ?? defaultWarning;
    this.onReload = options.onReload;
    this.now = options.now ?? Date.now;
  }

  /** Number of users currently loaded. */
  get size(): number {
    return this.snapshot?.byKey.size ?? 0;
  }

  /** Re-read the file now. Concurrent calls share one read; a call during a read causes another. */
  reload(): Promise<void> {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading;
    }
    const run = async (): Promise<void> => {
      try {
        do {
          this.loadAgain = false;
          await this.load();
        } while (this.loadAgain);
      } finally {
        this.loading = null;
      }
    };
    this.loading = run();
    return this.loading;
  }

  async verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    if (signal?.aborted) throw abortReason(signal);
    if (credentials.password.length === 0) return EMPTY_PASSWORD;
    const snap = await this.current();
    const entry = snap.byKey.get(userKey(credentials.username));
    const target = entry?.parsed ? entry.stored : snap.dummy;
    let ok: boolean;
    try {
      ok = await this.verifier.verify(credentials.password, target, signal);
    } catch (e) {
      if (signal?.aborted) throw abortReason(signal);
      return { ok: false, failure: 'temporary', reason: `password verification failed: ${(e as Error).message}` };
    }
    if (!ok || entry === undefined || entry.parsed === null) return INVALID;
    if (entry.nologin) return { ok: false, failure: 'refused', reason: 'login disabled (nologin)' };
    return { ok: true, account: entry.account };
  }

  /** True when at least one user has a PLAIN password. */
  supportsApop(): boolean {
    return this.snapshot?.apop ?? false;
  }

  async verifyApop(credentials: ApopCredentials, signal?: AbortSignal): Promise<AuthResult> {
    if (signal?.aborted) throw abortReason(signal);
    const snap = await this.current();
    const entry = snap.byKey.get(userKey(credentials.username));
    const secret = entry?.plaintext ?? this.apopDummy;
    const expected = Buffer.from(createHash('md5').update(credentials.timestamp + secret, 'utf8').digest('hex'), 'latin1');
    const given = Buffer.from(credentials.digest.toLowerCase(), 'latin1');
    let match: boolean;
    if (given.length === expected.length && /^[0-9a-f]{32}$/.test(credentials.digest.toLowerCase())) {
      match = timingSafeEqual(given, expected);
    } else {
      timingSafeEqual(expected, expected);
      match = false;
    }
    if (!match || entry === undefined || entry.plaintext === null) return INVALID;
    if (entry.nologin) return { ok: false, failure: 'refused', reason: 'login disabled (nologin)' };
    return { ok: true, account: entry.account };
  }

  async lookup(address: string, signal?: AbortSignal): Promise<Account | null> {
    if (signal?.aborted) throw abortReason(signal);
    const snap = await this.current();
    let a = address.trim();
    if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim();
    if (a === '') return null;
    const key = userKey(a);
    const exact = snap.byKey.get(key);
    if (exact) return exact.account;
    const at = key.lastIndexOf('@');
    if (at <= 0) return null;
    if (this.localDomains !== null && !this.localDomains.has(key.slice(at + 1))) return null;
    const local = snap.byKey.get(key.slice(0, at));
    return local !== undefined && !local.key.includes('@') ? local.account : null;
  }

  /** Whether `username` is a login name in the file (for ChainBackend). */
  async hasLogin(username: string, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) throw abortReason(signal);
    const snap = await this.current();
    return snap.byKey.has(userKey(username));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) clearTimeout(this.debounce);
    if (this.ownsVerifier) await this.verifier.close?.();
  }

  private startWatching(): void {
    const base = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === base) this.scheduleReload();
      });
      this.watcher.on('error', (e) => {
        this.fileWarning(`watching the directory failed (${(e as Error).message}); relying on periodic checks`);
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (e) {
      this.fileWarning(`cannot watch the directory (${(e as Error).message}); relying on periodic checks`);
    }
  }

  private scheduleReload(): void {
    if (this.closed || this.debounce) return;
    // Editors write in several steps; let them finish.
    this.debounce = setTimeout(() => {
      this.debounce = null;
      if (!this.closed) this.reload().catch((e: unknown) => this.fileProblem(e));
    }, 25);
    this.debounce.unref();
  }

  /** The users to answer from: re-stat the file at most once per interval, reload on change. */
  private async current(): Promise<Snapshot> {
    const now = this.now();
    if (now - this.lastCheck >= this.recheckMs && !this.closed) {
      this.lastCheck = now;
      try {
        if (await this.changedOnDisk()) await this.reload();
      } catch (e) {
        this.fileProblem(e);
      }
    }
    if (this.snapshot === null) throw new AccountsError('unavailable', `passwd-file ${this.path} not loaded`);
    return this.snapshot;
  }

  private async changedOnDisk(): Promise<boolean> {
    let id: FileIdentity | null;
    try {
      id = identityOf(await stat(this.path));
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') throw e;
      id = null;
    }
    return !sameIdentity(id, this.snapshot?.identity ?? null);
  }

  private async load(): Promise<void> {
    let handle;
    try {
      handle = await open(this.path, 'r');
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') throw e;
      if (this.snapshot === null) {
        this.snapshot = { byKey: new Map(), dummy: this.fixedDummy ?? defaultDummyHash(), apop: false, identity: null };
        this.fileWarning('file not found; no users until it is created');
      } else if (this.snapshot.identity !== null) {
        // Mid-replace by an editor that removes before it writes, or deleted on purpose:
        // keep answering from the last good copy until a new file appears.
        this.warnOnce('file disappeared; keeping the users last loaded');
      }
      return;
    }
    let text: string;
    let identity: FileIdentity;
    try {
      const st = await handle.stat();
      identity = identityOf(st);
      if ((st.mode & 0o077) !== 0) this.fileWarning(`file mode ${(st.mode & 0o777).toString(8)} lets others read it; use 600`);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
    this.snapshot = this.parse(text, identity);
    this.lastFileProblem = null;
    this.onReload?.({ file: this.path, users: this.snapshot.byKey.size, skipped: this.skippedLastParse });
  }

  private parse(text: string, identity: FileIdentity): Snapshot {
    const byKey = new Map<string, Entry>();
    const profiles = new Map<string, { parsed: ParsedHash; count: number }>();
    let apop = false;
    let skipped = 0;
    const lines = splitLines(text);
    for (let i = 0; i < lines.length; i++) {
      const lineNo = i + 1;
      const parsedLine = parsePasswdLine(lines[i]!);
      if (parsedLine.kind === 'blank' || parsedLine.kind === 'comment') continue;
      if (parsedLine.kind === 'malformed') {
        skipped++;
        this.lineWarning(lineNo, `${parsedLine.problem}; line skipped`);
        continue;
      }
      const line = parsedLine.entry;
      const key = userKey(line.username);
      if (byKey.has(key)) {
        skipped++;
        this.lineWarning(lineNo, `duplicate user ${line.username} (first one wins); line skipped`);
        continue;
      }
      let parsed: ParsedHash | null = null;
      if (line.password !== '') {
        try {
          parsed = parsePasswordHash(line.password);
        } catch (e) {
          this.lineWarning(lineNo, `user ${line.username}: ${(e as Error).message}; the user cannot log in`);
        }
      }
      const { quota, problems } = parseQuotaRules(line.extraFields);
      for (const problem of problems) this.lineWarning(lineNo, `user ${line.username}: ${problem}; that rule is not used`);
      const plaintext = parsed === null ? null : plaintextOf(parsed);
      if (plaintext !== null) apop = true;
      if (parsed !== null) {
        const profile = costProfile(parsed);
        const p = profiles.get(profile);
        if (p) p.count++;
        else profiles.set(profile, { parsed, count: 1 });
      }
      byKey.set(key, {
        key,
        stored: line.password,
        parsed,
        plaintext,
        nologin: line.extraFields.has('nologin'),
        account: Object.freeze({ username: line.username, mailboxId: key, backend: this.name, ...(quota ? { quota } : {}) }),
      });
    }
    this.skippedLastParse = skipped;
    let dummy = this.fixedDummy;
    if (dummy === null) {
      let best: { parsed: ParsedHash; count: number } | undefined;
      for (const p of profiles.values()) if (best === undefined || p.count > best.count) best = p;
      dummy = best ? dummyHashLike(best.parsed) : defaultDummyHash();
    }
    return { byKey, dummy, apop, identity };
  }

  private fileProblem(e: unknown): void {
    this.warnOnce(`cannot read: ${(e as Error).message}; keeping the users last loaded`);
  }

  /** A file-level warning, not repeated until the file loads again or the problem changes. */
  private warnOnce(problem: string): void {
    if (problem === this.lastFileProblem) return;
    this.lastFileProblem = problem;
    this.fileWarning(problem);
  }

  private fileWarning(problem: string): void {
    this.warn({ file: this.path, line: null, message: `${this.path}: ${problem}` });
  }

  private lineWarning(line: number, problem: string): void {
    this.warn({ file: this.path, line, message: `${this.path}:${line}: ${problem}` });
  }
}

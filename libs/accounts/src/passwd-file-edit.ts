/**
 * Editing a passwd-file in place: change one user's line, keep every other line (comments,
 * blank lines, malformed lines, other fields) byte for byte, and replace the file atomically
 * (temporary file in the same directory, fsync, rename, fsync the directory) with mode 0600.
 * Writers serialise on `<file>.lock`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AccountsError } from './errors.js';
import { parsePasswdLine, splitLines, userKey, validateUsername } from './passwd-format.js';
import { declaredScheme } from './schemes.js';

export interface PasswdFileUser {
  readonly username: string;
  /** The `{SCHEME}` as written (CRYPT when there is no prefix), or null for an empty password. */
  readonly scheme: string | null;
  /** 1-based line number. */
  readonly line: number;
}

function checkPasswordField(field: string): void {
  if (/[:\r\n]/.test(field)) throw new AccountsError('invalid-password', 'password field contains ":" or a line break');
}

/** A passwd-file held as its lines, edited without disturbing what it does not touch. */
export class PasswdFileDocument {
  private readonly lines: string[];

  private constructor(lines: string[]) {
    this.lines = lines;
  }

  static parse(text: string): PasswdFileDocument {
    return new PasswdFileDocument(splitLines(text));
  }

  /** Users in file order; for duplicates (same name ignoring case) only the first, which is the one in effect. */
  users(): PasswdFileUser[] {
    const seen = new Set<string>();
    const out: PasswdFileUser[] = [];
    this.lines.forEach((raw, i) => {
      const p = parsePasswdLine(raw);
      if (p.kind !== 'entry') return;
      const key = userKey(p.entry.username);
      if (seen.has(key)) return;
      seen.add(key);
      out.push({ username: p.entry.username, scheme: p.entry.password === '' ? null : declaredScheme(p.entry.password), line: i + 1 });
    });
    return out;
  }

  has(username: string): boolean {
    return this.indexesOf(username).length > 0;
  }

  /** Append `username:password`. Throws `user-exists` (names compare ignoring case). */
  add(username: string, passwordField: string): void {
    validateUsername(username);
    checkPasswordField(passwordField);
    if (this.has(username)) throw new AccountsError('user-exists', `user ${username} already exists`);
    this.lines.push(`${username}:${passwordField}`);
  }

  /** Replace the password field of the user's line, keeping its other fields. Throws `no-such-user`. */
  setPassword(username: string, passwordField: string): void {
    checkPasswordField(passwordField);
    const i = this.indexesOf(username)[0];
    if (i === undefined) throw new AccountsError('no-such-user', `no user ${username}`);
    const raw = this.lines[i]!;
    const cr = raw.endsWith('\r') ? '\r' : '';
    const fields = (cr ? raw.slice(0, -1) : raw).split(':');
    fields[1] = passwordField;
    this.lines[i] = fields.join(':') + cr;
  }

  /** Remove every line of the user (duplicates included, so none comes back into effect). Throws `no-such-user`. */
  remove(username: string): void {
    const indexes = this.indexesOf(username);
    if (indexes.length === 0) throw new AccountsError('no-such-user', `no user ${username}`);
    for (const i of indexes.reverse()) this.lines.splice(i, 1);
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }

  private indexesOf(username: string): number[] {
    const key = userKey(username);
    const out: number[] = [];
    this.lines.forEach((raw, i) => {
      const p = parsePasswdLine(raw);
      if (p.kind === 'entry' && userKey(p.entry.username) === key) out.push(i);
    });
    return out;
  }
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

/** The document at `path`; an empty one when the file does not exist. */
export async function readPasswdFileDocument(path: string): Promise<PasswdFileDocument> {
  try {
    return PasswdFileDocument.parse(await readFile(path, 'utf8'));
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return PasswdFileDocument.parse('');
    throw e;
  }
}

export interface WriteAtomicOptions {
  /** Default 0o600. */
  readonly mode?: number;
  /** Owner to give the new file when running as root (keeps a file owned by the service user). */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/** Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync the directory. */
export async function writeFileAtomic(path: string, data: string, options: WriteAtomicOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data, 'utf8');
    await fh.chmod(mode);
    if (options.owner && process.getuid?.() === 0) await fh.chown(options.owner.uid, options.owner.gid);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await d.close();
  }
}

async function lockIsStale(lockPath: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (e) {
    return errorCode(e) === 'ENOENT';
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) {
    // Half-written by a writer that is still starting, or garbage: stale once it is old.
    try {
      return Date.now() - (await stat(lockPath)).mtimeMs > 30_000;
    } catch {
      return true;
    }
  }
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return errorCode(e) === 'ESRCH';
  }
}

async function acquireLock(lockPath: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      return async () => {
        await unlink(lockPath).catch(() => undefined);
      };
    } catch (e) {
      if (errorCode(e) !== 'EEXIST') throw e;
    }
    if (await lockIsStale(lockPath)) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new AccountsError('lock-timeout', `${lockPath} is held by another process; remove it if that process is gone`);
    }
    await sleep(50);
  }
}

export interface UpdateOptions {
  /** How long to wait for another writer's lock. Default 10 000 ms. */
  readonly lockTimeoutMs?: number;
}

/**
 * Lock the file, read it (missing = empty; the directory is created), let `mutate` edit the
 * document, then write it back atomically with mode 0600. Nothing is written if `mutate` throws.
 */
export async function updatePasswdFile<T>(
  path: string,
  mutate: (doc: PasswdFileDocument) => T | Promise<T>,
  options: UpdateOptions = {},
): Promise<T> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const release = await acquireLock(`${path}.lock`, options.lockTimeoutMs ?? 10_000);
  try {
    let text = '';
    let owner: { uid: number; gid: number } | undefined;
    try {
      text = await readFile(path, 'utf8');
      const st = await stat(path);
      owner = { uid: st.uid, gid: st.gid };
    } catch (e) {
      if (errorCode(e) !== 'ENOENT') throw e;
    }
    const doc = PasswdFileDocument.parse(text);
    const result = await mutate(doc);
    await writeFileAtomic(path, doc.toString(), { mode: 0o600, ...(owner ? { owner } : {}) });
    return result;
  } finally {
    await release();
  }
}

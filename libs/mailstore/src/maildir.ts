import { createHash } from 'node:crypto';
import { readdirSync, statSync, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { dirname, join } from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import type { Lease } from '@postern/locks';
import { StoreError } from './errors.js';
import { naturalCompare } from './ids.js';
import { LeasedDrop, asStoreError, consumeSource, guardSource, lockLost, mapLimit, tooLarge } from './internal.js';
import { openMessageFile, openStoredFile, type ReadMode } from './file-reader.js';
import { checkQuota, hasQuota, overQuota, quotaRoom, type QuotaUsage } from './quota.js';
import { CanonicalCounter, CanonicalEncoder, LfEncoder, MESSAGE_CHUNK_SIZE, messageStream } from './streams.js';
import type { DeliverOptions, DeliveryResult, MailboxRef, MailStore, MessageMeta, ReadOptions, StoredReader } from './types.js';

export interface MaildirStoreOptions {
  /** The Maildir root (the directory holding `tmp/ new/ cur/`) of a mailbox. */
  pathFor(mailbox: MailboxRef): string;
  /** Host part of new file names; default `os.hostname()`. */
  hostname?: string;
  /** fsync files and directories at the points that make delivery and deletion durable. Default true. */
  fsync?: boolean;
  /**
   * Compare a file's `S=` hint with its real size (one stat per message at open) and recompute
   * the sizes when they differ. Default true; false trusts `S=`/`W=` without a stat.
   */
  verifySizeHints?: boolean;
  /**
   * How message files are listed and read: `sync` on the event loop (fast for files in the page
   * cache, the default) or `async` through the libuv thread pool (for slow or network disks).
   * See file-reader.ts for the measurements behind the default.
   */
  readMode?: ReadMode;
  /**
   * Write delivered messages in canonical form (CRLF line ends, `S=` equal to `W=`), as Dovecot
   * does with `mail_save_crlf = yes`, so serving them needs no conversion. Default true; false
   * writes LF line ends like Postfix. Either kind of file is served.
   */
  saveCrlf?: boolean;
}

type Subdir = 'new' | 'cur';

/** The parts of a Maildir file name: `base[,key=value...][:info]`. */
export interface MaildirName {
  /** Up to the first `,` or `:`; unique per message, the source of the UIDL. */
  readonly base: string;
  /** `S=`: size on disk. */
  readonly stored: number | undefined;
  /** `W=`: size with CRLF line ends (Dovecot's virtual size). */
  readonly virtual: number | undefined;
  /** Other `,` fields, kept when the name is rewritten. */
  readonly fields: readonly string[];
  /** After the first `:` (for example `2,S`), or undefined. */
  readonly info: string | undefined;
}

const READ_CONCURRENCY = 4;
const STAT_CONCURRENCY = 64;
const UNLINK_CONCURRENCY = 16;
const MAX_UID_LENGTH = 70;
const HASHED_UID_PREFIX = 'h.';

export function parseMaildirName(name: string): MaildirName {
  const colon = name.indexOf(':');
  const head = colon === -1 ? name : name.slice(0, colon);
  const info = colon === -1 ? undefined : name.slice(colon + 1);
  const parts = head.split(',');
  const base = parts[0] as string;
  let stored: number | undefined;
  let virtual: number | undefined;
  const fields: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i] as string;
    if (part.startsWith('S=') && stored === undefined && isDecimal(part, 2)) stored = Number(part.slice(2));
    else if (part.startsWith('W=') && virtual === undefined && isDecimal(part, 2)) virtual = Number(part.slice(2));
    else fields.push(part);
  }
  return { base, stored, virtual, fields, info };
}

function isDecimal(text: string, from: number): boolean {
  if (text.length === from || text.length - from > 15) return false;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The file name with `S=` and `W=` set, other fields and the `:info` suffix kept. */
export function withSizeHints(parsed: MaildirName, stored: number, virtual: number): string {
  let name = parsed.base;
  for (const field of parsed.fields) name += ',' + field;
  name += `,S=${stored},W=${virtual}`;
  if (parsed.info !== undefined) name += ':' + parsed.info;
  return name;
}

/**
 * The UIDL of a Maildir message: its base name when that is 1..70 characters of 0x21..0x7E,
 * otherwise `h.` and 27 characters of the base64url SHA-256 of the base name.
 */
/**
 * Delivery time from a Maildir base name (`<secs>.…`, as every Maildir writer names new
 * files), in ms since the epoch; undefined when the name does not start that way.
 */
export function maildirReceived(base: string): number | undefined {
  const dot = base.indexOf('.');
  if (dot < 1 || dot > 12) return undefined;
  for (let i = 0; i < dot; i++) {
    const c = base.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  return Number(base.slice(0, dot)) * 1000;
}

export function maildirUid(base: string): string {
  let printable = base.length >= 1 && base.length <= MAX_UID_LENGTH;
  for (let i = 0; printable && i < base.length; i++) {
    const c = base.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) printable = false;
  }
  if (printable) return base;
  return HASHED_UID_PREFIX + createHash('sha256').update(base, 'utf8').digest('base64url').slice(0, 27);
}

function invalidUsername(username: string, why: string): StoreError {
  return new StoreError('invalid', `username ${JSON.stringify(username)} cannot name a Maildir: ${why}`, { temporary: false });
}

/**
 * Resolves a Maildir path template for a login name: `%u` full username, `%n` the part before
 * the last `@` (the whole name without one), `%d` the part after it (empty without one), `%%` a
 * percent sign. Rejects names that could leave the template's directory: empty, containing `/`
 * or NUL, `.` or `..`, starting with `.`, or with an empty or dot-led part around the `@`.
 */
export function maildirPathFromTemplate(template: string, username: string): string {
  if (username.length === 0) throw invalidUsername(username, 'empty');
  if (username.includes('/')) throw invalidUsername(username, 'contains "/"');
  if (username.includes('\0')) throw invalidUsername(username, 'contains NUL');
  if (username.startsWith('.')) throw invalidUsername(username, 'starts with "."');
  const at = username.lastIndexOf('@');
  const local = at === -1 ? username : username.slice(0, at);
  const domain = at === -1 ? '' : username.slice(at + 1);
  if (at !== -1) {
    if (local.length === 0) throw invalidUsername(username, 'empty local part');
    if (domain.length === 0) throw invalidUsername(username, 'empty domain');
    if (domain.startsWith('.')) throw invalidUsername(username, 'domain starts with "."');
  }
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '%') {
      out += c;
      continue;
    }
    const key = template[++i];
    if (key === 'u') out += username;
    else if (key === 'n') out += local;
    else if (key === 'd') out += domain;
    else if (key === '%') out += '%';
    else {
      throw new StoreError('invalid', `unknown escape "%${key ?? ''}" in Maildir template ${JSON.stringify(template)}`, {
        temporary: false,
      });
    }
  }
  return out;
}

/** `/` -> `\057`, `:` -> `\072`, `,` -> `\054`, so the host part cannot end the base name. */
export function sanitizeMaildirHostname(host: string): string {
  const clean = host.replaceAll('/', '\\057').replaceAll(':', '\\072').replaceAll(',', '\\054');
  return clean.length > 0 ? clean : 'localhost';
}

let lastMicros = 0;
let deliveries = 0;

/** `<secs>.M<usecs>P<pid>Q<counter>.<host>`; (secs, usecs) strictly increase within a process. */
function uniqueBaseName(host: string): string {
  let micros = Date.now() * 1000 + Number((process.hrtime.bigint() / 1000n) % 1000n);
  if (micros <= lastMicros) micros = lastMicros + 1;
  lastMicros = micros;
  const secs = Math.floor(micros / 1e6);
  const usecs = micros - secs * 1e6;
  return `${secs}.M${usecs}P${process.pid}Q${++deliveries}.${host}`;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Collects small writes into 64 KiB writes; copies, so a source may reuse its buffers. */
class BufferedFileWriter {
  readonly #handle: FileHandle;
  readonly #buffer = Buffer.allocUnsafe(MESSAGE_CHUNK_SIZE);
  #used = 0;

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  async write(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    if (this.#used + bytes.length > this.#buffer.length) await this.flush();
    if (bytes.length >= this.#buffer.length) {
      await this.#writeAll(bytes);
      return;
    }
    bytes.copy(this.#buffer, this.#used);
    this.#used += bytes.length;
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const used = this.#used;
    this.#used = 0;
    await this.#writeAll(this.#buffer.subarray(0, used));
  }

  async #writeAll(bytes: Buffer): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.#handle.write(bytes, offset, bytes.length - offset, null);
      offset += bytesWritten;
    }
  }
}

interface Entry {
  readonly base: string;
  readonly uid: string;
  readonly dir: Subdir;
  name: string;
  /** Octets on disk. */
  stored: number;
  /** Canonical octets. */
  size: number;
  /** Delivery time (ms since the epoch), when known. */
  received?: number;
}

interface Candidate {
  readonly dir: Subdir;
  readonly name: string;
  readonly parsed: MaildirName;
}

/**
 * Maildir, served in place: the layout Postfix and Dovecot write (LF line ends on disk,
 * `tmp/ new/ cur/`, `,S=` and `,W=` size hints, `:2,flags` in cur/). See the package README.
 */
export class MaildirStore implements MailStore {
  readonly kind = 'maildir';
  readonly #pathFor: (mailbox: MailboxRef) => string;
  readonly #host: string;
  readonly #fsync: boolean;
  readonly #verify: boolean;
  readonly #mode: ReadMode;
  readonly #saveCrlf: boolean;
  #sizeComputations = 0;

  constructor(options: MaildirStoreOptions) {
    this.#pathFor = options.pathFor;
    this.#host = sanitizeMaildirHostname(options.hostname ?? osHostname());
    this.#fsync = options.fsync ?? true;
    this.#verify = options.verifySizeHints ?? true;
    this.#mode = options.readMode ?? 'sync';
    this.#saveCrlf = options.saveCrlf ?? true;
  }

  /** How many message files were read to compute their sizes (missing or stale hints). */
  get sizeComputations(): number {
    return this.#sizeComputations;
  }

  /** The Maildir root of a mailbox. */
  root(mailbox: MailboxRef): string {
    try {
      return this.#pathFor(mailbox);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError('invalid', 'no Maildir path for this mailbox', { cause: error, temporary: false });
    }
  }

  async open(mailbox: MailboxRef, lease: Lease, signal?: AbortSignal): Promise<MaildirMaildrop> {
    if (!lease.held()) throw lockLost();
    const root = this.root(mailbox);
    try {
      const entries = await this.#scan(root, signal);
      return new MaildirMaildrop(root, entries, lease, this.#fsync, this.#mode);
    } catch (error) {
      throw asStoreError(error, 'listing the Maildir failed');
    }
  }

  async stat(mailbox: MailboxRef): Promise<{ count: number; octets: number }> {
    const root = this.root(mailbox);
    try {
      const entries = await this.#scan(root, undefined);
      let octets = 0;
      for (const entry of entries) octets += entry.size;
      return { count: entries.length, octets };
    } catch (error) {
      throw asStoreError(error, 'listing the Maildir failed');
    }
  }

  /** Usage as the quota check counts it (file names, a count kept while the directories are unchanged). */
  async quotaUsage(mailbox: MailboxRef): Promise<QuotaUsage> {
    try {
      return await maildirUsage(this.root(mailbox), this.#mode);
    } catch (error) {
      throw asStoreError(error, 'counting the Maildir failed');
    }
  }

  async deliver(mailbox: MailboxRef, source: Readable, options: DeliverOptions = {}): Promise<DeliveryResult> {
    const unguard = guardSource(source);
    const { maxSize, signal, quota } = options;
    const limited = hasQuota(quota);
    let tmpPath: string | undefined;
    let handle: FileHandle | undefined;
    let moved = false;
    try {
      const root = this.root(mailbox);
      await this.#ensureMaildir(root);
      // Rejects before reading when there is no room at all, and bounds the read otherwise; the
      // check that counts is the one under the mailbox's turn, before the rename.
      const room = limited ? quotaRoom(await maildirUsage(root, this.#mode), quota) : Number.POSITIVE_INFINITY;
      const base = uniqueBaseName(this.#host);
      tmpPath = join(root, 'tmp', base);
      handle = await open(tmpPath, 'wx', 0o600);
      const encoder = this.#saveCrlf ? new CrlfWriter() : new LfEncoder();
      const writer = new BufferedFileWriter(handle);
      await consumeSource(source, signal, async (chunk) => {
        const out = encoder.push(chunk);
        if (maxSize !== undefined && encoder.canonicalSize > maxSize) throw tooLarge(maxSize);
        if (encoder.canonicalSize > room) throw overQuota(`message passes the ${room} octets left`);
        await writer.write(out);
      });
      const tail = encoder.end();
      if (maxSize !== undefined && encoder.canonicalSize > maxSize) throw tooLarge(maxSize);
      await writer.write(tail);
      await writer.flush();
      if (this.#fsync) await handle.datasync();
      const closing = handle;
      handle = undefined;
      await closing.close();
      const name = `${base},S=${encoder.storedSize},W=${encoder.canonicalSize}`;
      const from = tmpPath;
      const publish = async (): Promise<void> => {
        const usage = limited ? await maildirUsage(root, this.#mode) : undefined;
        if (usage) checkQuota(usage, encoder.canonicalSize, quota);
        await rename(from, join(root, 'new', name));
        moved = true;
        if (usage) await notePublished(root, this.#mode, usage, encoder.canonicalSize);
      };
      // With a quota, count and publish one delivery at a time per mailbox (in this process).
      await (limited ? inMailboxTurn(root, publish) : publish());
      if (this.#fsync) await fsyncDirectory(join(root, 'new'));
      return { uid: maildirUid(base), size: encoder.canonicalSize };
    } catch (error) {
      if (handle !== undefined) await handle.close().catch(() => {});
      if (tmpPath !== undefined && !moved) await unlink(tmpPath).catch(() => {});
      throw asStoreError(error, 'delivery to the Maildir failed');
    } finally {
      unguard();
    }
  }

  async #ensureMaildir(root: string): Promise<void> {
    let first: string | undefined;
    for (const sub of ['tmp', 'new', 'cur']) {
      const created = await mkdir(join(root, sub), { recursive: true, mode: 0o700 });
      first ??= created;
    }
    if (first === undefined || !this.#fsync) return;
    // Make the new directory entries durable: every directory from root/ up to the parent of
    // the first directory created.
    const stop = dirname(first);
    for (let dir = root; ; dir = dirname(dir)) {
      await fsyncDirectory(dir);
      if (dir === stop || dirname(dir) === dir) break;
    }
  }

  async #scan(root: string, signal: AbortSignal | undefined): Promise<Entry[]> {
    let candidates = await listCandidates(root, this.#mode);
    signal?.throwIfAborted();
    let sizes: (number | undefined)[] = [];
    if (this.#verify) {
      sizes = await mapLimit(candidates, STAT_CONCURRENCY, (c) => fileSize(join(root, c.dir, c.name), this.#mode));
      if (sizes.some((s) => s === undefined)) {
        // Renamed (new/ -> cur/, flags changed) or deleted since the listing: look again for those.
        const again = await listCandidates(root, this.#mode);
        const byBase = new Map(again.map((c) => [c.parsed.base, c]));
        const kept: Candidate[] = [];
        const keptSizes: (number | undefined)[] = [];
        await mapLimit(candidates, STAT_CONCURRENCY, async (c, i) => {
          let candidate = c;
          let size = sizes[i];
          if (size === undefined) {
            const moved = byBase.get(c.parsed.base);
            if (moved === undefined) return;
            size = await fileSize(join(root, moved.dir, moved.name), this.#mode);
            if (size === undefined) return;
            candidate = moved;
          }
          kept[i] = candidate;
          keptSizes[i] = size;
        });
        candidates = kept.filter((c) => c !== undefined);
        sizes = keptSizes.filter((s) => s !== undefined);
      }
      signal?.throwIfAborted();
    }
    const entries = await mapLimit(candidates, READ_CONCURRENCY, (c, i) => this.#entry(root, c, sizes[i], signal));
    const present = entries.filter((e): e is Entry => e !== undefined);
    present.sort((a, b) => naturalCompare(a.base, b.base));
    return present;
  }

  async #entry(root: string, c: Candidate, realSize: number | undefined, signal: AbortSignal | undefined): Promise<Entry | undefined> {
    const { parsed } = c;
    const uid = maildirUid(parsed.base);
    const received = maildirReceived(parsed.base) ?? (await fileMtime(join(root, c.dir, c.name), this.#mode));
    const when = received === undefined ? {} : { received };
    if (
      parsed.stored !== undefined &&
      parsed.virtual !== undefined &&
      (realSize === undefined ? !this.#verify : realSize === parsed.stored)
    ) {
      return { base: parsed.base, uid, dir: c.dir, name: c.name, stored: parsed.stored, size: parsed.virtual, ...when };
    }
    signal?.throwIfAborted();
    const path = join(root, c.dir, c.name);
    this.#sizeComputations++;
    const measured = await measureFile(path);
    if (measured === undefined) return undefined;
    const entry: Entry = { base: parsed.base, uid, dir: c.dir, name: c.name, stored: measured.stored, size: measured.canonical, ...when };
    const hinted = withSizeHints(parsed, measured.stored, measured.canonical);
    if (hinted !== c.name) {
      try {
        await rename(path, join(root, c.dir, hinted));
        entry.name = hinted;
        // The file now counts its W= size for quota.
        usageCache.delete(root);
      } catch {
        // The hints only save work; a file renamed or removed meanwhile keeps its old name here.
      }
    }
    return entry;
  }
}

/** Canonical form on disk: the same counters as LfEncoder, with both sizes equal. */
class CrlfWriter {
  readonly #encoder = new CanonicalEncoder();
  push(chunk: Buffer): Buffer {
    return this.#encoder.push(chunk);
  }
  end(): Buffer {
    return this.#encoder.end();
  }
  get canonicalSize(): number {
    return this.#encoder.size;
  }
  get storedSize(): number {
    return this.#encoder.size;
  }
}

async function listDir(root: string, dir: Subdir, mode: ReadMode): Promise<Candidate[]> {
  let dirents;
  try {
    const path = join(root, dir);
    dirents = mode === 'sync' ? readdirSync(path, { withFileTypes: true }) : await readdir(path, { withFileTypes: true });
  } catch (error) {
    if (errno(error) === 'ENOENT') return [];
    throw error;
  }
  const out: Candidate[] = [];
  for (const d of dirents) {
    const name = d.name;
    // Dot files are not messages; U+FFFD means a name that is not UTF-8 and cannot be opened by it.
    if (name.startsWith('.') || name.includes('\uFFFD') || d.isDirectory()) continue;
    out.push({ dir, name, parsed: parseMaildirName(name) });
  }
  return out;
}

/** new/ first, then cur/: a message moved between the two reads shows up twice, never not at all. */
async function listCandidates(root: string, mode: ReadMode): Promise<Candidate[]> {
  const fresh = await listDir(root, 'new', mode);
  const seen = await listDir(root, 'cur', mode);
  const byBase = new Map<string, Candidate>();
  for (const c of fresh) byBase.set(c.parsed.base, c);
  for (const c of seen) byBase.set(c.parsed.base, c);
  return [...byBase.values()];
}

const mailboxTurns = new Map<string, Promise<void>>();

/** Runs `fn` after every earlier call for the same Maildir (within this process) has finished. */
async function inMailboxTurn<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const previous = mailboxTurns.get(root) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  const tail = previous.then(() => mine);
  mailboxTurns.set(root, tail);
  await previous;
  try {
    return await fn();
  } finally {
    done();
    if (mailboxTurns.get(root) === tail) mailboxTurns.delete(root);
  }
}

interface UsageSnapshot {
  readonly usage: QuotaUsage;
  readonly newMtime: bigint;
  readonly curMtime: bigint;
}

/**
 * Quota usage per Maildir as this process last counted it, trusted while new/ and cur/ keep the
 * mtimes they had before that count; at most USAGE_CACHE_SIZE Maildirs, the oldest dropped first.
 */
const usageCache = new Map<string, UsageSnapshot>();
const USAGE_CACHE_SIZE = 10_000;

/** Kept across evictions: a live iterator resumes past the holes deletions left (a fresh one walks them all). */
let usageOldest: Iterator<string> | null = null;

function rememberUsage(root: string, snapshot: UsageSnapshot): void {
  usageCache.delete(root);
  usageCache.set(root, snapshot);
  if (usageCache.size <= USAGE_CACHE_SIZE) return;
  let next = usageOldest?.next();
  if (next === undefined || next.done === true) {
    usageOldest = usageCache.keys();
    next = usageOldest.next();
  }
  if (next.done !== true) usageCache.delete(next.value);
}

async function dirMtime(path: string, mode: ReadMode): Promise<bigint> {
  try {
    return (mode === 'sync' ? statSync(path, { bigint: true }) : await stat(path, { bigint: true })).mtimeNs;
  } catch (error) {
    if (errno(error) === 'ENOENT') return -1n;
    throw error;
  }
}

const dirMtimes = (root: string, mode: ReadMode): Promise<[bigint, bigint]> =>
  Promise.all([dirMtime(join(root, 'new'), mode), dirMtime(join(root, 'cur'), mode)]);

/**
 * The usage for quota: from the cache when neither directory changed since it was counted (two
 * stats), else counted again. The mtimes are read before the listing, so a change during it
 * shows as a different mtime next time.
 */
async function maildirUsage(root: string, mode: ReadMode): Promise<QuotaUsage> {
  const [newMtime, curMtime] = await dirMtimes(root, mode);
  const cached = usageCache.get(root);
  if (cached && cached.newMtime === newMtime && cached.curMtime === curMtime) return cached.usage;
  const usage = await countUsage(root, mode);
  rememberUsage(root, { usage, newMtime, curMtime });
  return usage;
}

/** After this process added a message (in the mailbox's turn): the count it made, plus that message. */
async function notePublished(root: string, mode: ReadMode, before: QuotaUsage, size: number): Promise<void> {
  const [newMtime, curMtime] = await dirMtimes(root, mode);
  rememberUsage(root, { usage: { count: before.count + 1, octets: before.octets + size }, newMtime, curMtime });
}

/**
 * Messages and canonical octets in new/ and cur/ for quota: the `W=` hint, else `S=`, else the
 * size on disk (a file without hints counts its stored octets until a POP3 session adds them).
 */
async function countUsage(root: string, mode: ReadMode): Promise<QuotaUsage> {
  const candidates = await listCandidates(root, mode);
  const sizes = await mapLimit(candidates, STAT_CONCURRENCY, async (c) =>
    c.parsed.virtual ?? c.parsed.stored ?? fileSize(join(root, c.dir, c.name), mode),
  );
  let count = 0;
  let octets = 0;
  for (const size of sizes) {
    if (size === undefined) continue;
    count++;
    octets += size;
  }
  return { count, octets };
}

async function statIfExists(path: string, mode: ReadMode): Promise<Stats | undefined> {
  try {
    return mode === 'sync' ? statSync(path) : await stat(path);
  } catch (error) {
    if (errno(error) === 'ENOENT') return undefined;
    throw error;
  }
}

async function fileSize(path: string, mode: ReadMode): Promise<number | undefined> {
  return (await statIfExists(path, mode))?.size;
}

/** A file's mtime (ms since the epoch); undefined when it is gone. */
async function fileMtime(path: string, mode: ReadMode): Promise<number | undefined> {
  return (await statIfExists(path, mode))?.mtimeMs;
}

/** Reads a file once, counting its octets and their canonical size. */
async function measureFile(path: string): Promise<{ stored: number; canonical: number } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (errno(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const buffer = Buffer.allocUnsafe(MESSAGE_CHUNK_SIZE);
    const counter = new CanonicalCounter();
    let stored = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      stored += bytesRead;
      counter.update(buffer.subarray(0, bytesRead));
    }
    return { stored, canonical: counter.end() };
  } finally {
    await handle.close();
  }
}

/** A snapshot of a Maildir taken at open. */
export class MaildirMaildrop extends LeasedDrop {
  readonly messages: readonly MessageMeta[];
  readonly #root: string;
  readonly #entries: readonly Entry[];
  readonly #fsync: boolean;
  readonly #mode: ReadMode;

  constructor(root: string, entries: Entry[], lease: Lease, fsync: boolean, mode: ReadMode) {
    super(lease);
    this.#root = root;
    this.#entries = entries;
    this.#fsync = fsync;
    this.#mode = mode;
    this.messages = Object.freeze(entries.map((e) => Object.freeze(e.received === undefined ? { uid: e.uid, size: e.size } : { uid: e.uid, size: e.size, received: e.received })));
  }

  protected async readMessage(index: number, options: ReadOptions): Promise<Readable> {
    const entry = this.#entries[index] as Entry;
    let file = await openMessageFile(join(this.#root, entry.dir, entry.name), entry.stored, this.#mode, MESSAGE_CHUNK_SIZE);
    if (file === undefined) {
      // Maybe renamed by another agent (new/ -> cur/, flags): find it by its base name.
      const moved = await this.#locate(entry.base);
      if (moved !== undefined) file = await openMessageFile(join(this.#root, moved.dir, moved.name), entry.stored, this.#mode, MESSAGE_CHUNK_SIZE);
    }
    if (file === undefined) {
      throw new StoreError('not-found', `message ${entry.uid} is no longer in the Maildir`, { temporary: false });
    }
    // S= equal to W= means no bare LF and a final CRLF: the file is canonical already.
    const canonicalize = entry.stored !== entry.size;
    const stream = messageStream(file, { bodyLines: options.bodyLines, canonicalize });
    return options.signal === undefined ? stream : addAbortSignal(options.signal, stream);
  }

  /**
   * Sync mode: the file as stored, for the gateway's one-pass RETR (it canonicalises and
   * dot-stuffs in the same pass). Undefined when the file is not where the listing saw it: the
   * caller then takes read(), which looks for it.
   */
  protected override openStored(index: number): StoredReader | undefined {
    if (this.#mode !== 'sync') return undefined;
    const entry = this.#entries[index] as Entry;
    return openStoredFile(join(this.#root, entry.dir, entry.name), entry.stored);
  }

  protected async removeMessages(indexes: readonly number[]): Promise<void> {
    const touched = new Set<Subdir>();
    let listing: Promise<Map<string, Candidate>> | undefined;
    await mapLimit(indexes, UNLINK_CONCURRENCY, async (index) => {
      const entry = this.#entries[index] as Entry;
      if (await unlinkIfExists(join(this.#root, entry.dir, entry.name))) {
        touched.add(entry.dir);
        return;
      }
      listing ??= listCandidates(this.#root, this.#mode).then((all) => new Map(all.map((c) => [c.parsed.base, c])));
      const moved = (await listing).get(entry.base);
      if (moved !== undefined && (await unlinkIfExists(join(this.#root, moved.dir, moved.name)))) touched.add(moved.dir);
    });
    // Deletions within the mtime tick of a cached count would go unseen: count again next time.
    usageCache.delete(this.#root);
    if (this.#fsync) await Promise.all([...touched].map((dir) => fsyncDirectory(join(this.#root, dir))));
  }

  async #locate(base: string): Promise<Candidate | undefined> {
    const all = await listCandidates(this.#root, this.#mode);
    return all.find((c) => c.parsed.base === base);
  }
}

/** True when this call removed the file; false when it was already gone. */
async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if (errno(error) === 'ENOENT') return false;
    throw error;
  }
}

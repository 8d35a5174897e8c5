// Deterministic test mail: a Maildir tree `<root>/<user>/Maildir/{cur,new,tmp}` for N users with
// M messages each, sizes drawn from a distribution, LF line ends, and Maildir file names that
// carry both sizes (`<secs>.M<usecs>P<pid>Q<k>.<host>,S=<size>,W=<crlf size>`), plus a Dovecot
// passwd-file, a plain `user:password` accounts file for the load generator, and a manifest.
//
// The same seed gives the same bytes. Some body lines begin with '.', and some are a lone '.',
// so every fetch exercises dot-stuffing.
//
// CLI: tsx loadtest/src/mailgen.ts --root DIR [--users N] [--messages M] [--sizes SPEC] ...

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, expandTemplate, intOption, isMain, runCli } from './cli-util.js';

const LF = 0x0a;

export interface SizeRange {
  readonly min: number;
  readonly max: number;
  readonly weight: number;
}

/** A message-size distribution: weighted ranges, each drawn uniformly. */
export interface SizeDistribution {
  readonly spec: string;
  readonly ranges: readonly SizeRange[];
}

export const DEFAULT_SIZES = '1k-4k:40,4k-32k:45,32k-256k:13,256k-1m:2';

function parseSize(s: string): number {
  const m = /^([0-9]+)(k|kib|m|mib)?$/i.exec(s.trim());
  if (m === null) throw new UsageError(`bad size ${JSON.stringify(s)} (use e.g. 512, 4k, 1m)`);
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1;
  return Number(m[1]) * mult;
}

/**
 * Parses a size spec: `4096` or `4k` (fixed), `1k-8k` (uniform), or a weighted mix
 * `1k-4k:40,4k-32k:45,32k-256k:13,256k-1m:2` (weights need not add up to 100).
 */
export function parseSizeDistribution(spec: string): SizeDistribution {
  const ranges: SizeRange[] = [];
  for (const part of spec.split(',')) {
    const [range, weightText] = part.split(':');
    if (range === undefined || range.trim() === '') throw new UsageError(`bad size spec ${JSON.stringify(spec)}`);
    const weight = weightText === undefined ? 1 : Number(weightText);
    if (!Number.isFinite(weight) || weight <= 0) throw new UsageError(`bad weight in size spec ${JSON.stringify(part)}`);
    const bounds = range.split('-');
    const min = parseSize(bounds[0] as string);
    const max = bounds.length > 1 ? parseSize(bounds[1] as string) : min;
    if (bounds.length > 2 || max < min) throw new UsageError(`bad range in size spec ${JSON.stringify(part)}`);
    ranges.push({ min, max, weight });
  }
  return { spec, ranges };
}

/** Mean of a distribution, in octets (LF form). */
export function meanSize(dist: SizeDistribution): number {
  const total = dist.ranges.reduce((a, r) => a + r.weight, 0);
  return dist.ranges.reduce((a, r) => a + (r.weight / total) * ((r.min + r.max) / 2), 0);
}

/** mulberry32: small, fast, good enough for test data. Returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mix(seed: number, u: number, k: number): number {
  let h = (seed ^ Math.imul(u + 1, 0x9e3779b1) ^ Math.imul(k + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function drawSize(rng: () => number, dist: SizeDistribution): number {
  const total = dist.ranges.reduce((a, r) => a + r.weight, 0);
  let x = rng() * total;
  let range = dist.ranges[dist.ranges.length - 1] as SizeRange;
  for (const r of dist.ranges) {
    if (x < r.weight) {
      range = r;
      break;
    }
    x -= r.weight;
  }
  return range.min + Math.floor(rng() * (range.max - range.min + 1));
}

const WORDS = (
  'the of and to in is was for on that with as by at from this be are have it an which or his ' +
  'mail server message client session mailbox folder delivery retrieve protocol octet line stuffing ' +
  'quarterly report attached please review meeting tomorrow schedule invoice payment thanks regards ' +
  'network latency throughput storage backup archive cluster gateway queue lambda kappa sigma omega'
)
  .split(' ')
  .map((w) => Buffer.from(w, 'latin1'));

const DOT_LINES = ['.', '..', '.hidden line that starts with a dot', '. spaced', '...'].map((s) => Buffer.from(s, 'latin1'));

function rfc5322Date(secs: number): string {
  return new Date(secs * 1000).toUTCString().replace('GMT', '+0000');
}

/** Builds one message: headers, a blank line, and a body padded to exactly `size` octets (LF form) where possible. */
export function buildMessage(rng: () => number, size: number, header: Record<string, string>): Buffer {
  let head = '';
  for (const [k, v] of Object.entries(header)) head += `${k}: ${v}\n`;
  head += '\n';
  const headBuf = Buffer.from(head, 'latin1');
  const bodyLen = Math.max(0, size - headBuf.length);
  const out = Buffer.allocUnsafe(headBuf.length + bodyLen);
  headBuf.copy(out, 0);
  let pos = headBuf.length;
  const end = out.length;
  while (pos < end) {
    const room = end - pos - 1; // octets available before this line's LF
    if (room <= 0) {
      out[pos++] = LF;
      break;
    }
    const lineStart = pos;
    const lineMax = Math.min(room, 20 + Math.floor(rng() * 57));
    let words = true;
    if (rng() < 0.03) {
      const d = DOT_LINES[Math.floor(rng() * DOT_LINES.length)] as Buffer;
      if (d.length <= lineMax) {
        d.copy(out, pos);
        pos += d.length;
        words = false;
      }
    }
    while (words) {
      const w = WORDS[Math.floor(rng() * WORDS.length)] as Buffer;
      const sep = pos > lineStart ? 1 : 0;
      if (pos - lineStart + sep + w.length > lineMax) break;
      if (sep === 1) out[pos++] = 0x20;
      w.copy(out, pos);
      pos += w.length;
    }
    if (pos === lineStart || end - pos - 1 < 20) {
      // Nothing fitted, or what is left is too short for another line: pad this one to the end.
      const fill = pos === lineStart ? lineMax : Math.min(end - pos - 1, 200);
      out.fill(0x78, pos, pos + fill);
      pos += fill;
    }
    out[pos++] = LF;
  }
  return out;
}

/** Number of LF octets in a buffer (so CRLF size = length + count, for LF-only data). */
export function countLf(buf: Buffer): number {
  let n = 0;
  let i = buf.indexOf(LF);
  while (i !== -1) {
    n++;
    i = buf.indexOf(LF, i + 1);
  }
  return n;
}

export interface MailgenOptions {
  /** Root of the tree; users go in `<root>/<user>/Maildir`. */
  root: string;
  users: number;
  messages: number;
  /** Size spec (see parseSizeDistribution). Default DEFAULT_SIZES. */
  sizes?: string;
  seed?: number;
  /** User name template; `%d` (or `%04d`) is the user number, from 1. Default `user%d`. */
  userTemplate?: string;
  /** Password, with the same `%d` expansion. Default `secret`. */
  password?: string;
  /** Password scheme for the passwd-file: PLAIN (written as is) or any `doveadm pw -s` scheme. */
  scheme?: string;
  /** passwd-file path. Default `<root>/passwd`. */
  passwdFile?: string;
  /** Where messages are put: `new` (just delivered, the default) or `cur` (with `:2,`). */
  into?: 'new' | 'cur';
  /** Host part of the file names. Default `loadgen`. */
  host?: string;
  /** First delivery time, Unix seconds. Default 1700000000. */
  baseTime?: number;
  /** Replace users' Maildirs that already exist. Default false (refuse). */
  force?: boolean;
  /**
   * Line ends on disk: `lf` (default, as Postfix writes) or `crlf` (as Postern's own LMTP
   * delivery and Dovecot with mail_save_crlf write; then S= equals W=).
   */
  lineEnds?: 'lf' | 'crlf';
}

export interface GeneratedUser {
  user: string;
  password: string;
  messages: number;
  /** Sum of S= (LF form) sizes. */
  octets: number;
  /** Sum of W= (CRLF form) sizes: what a full fetch of the mailbox returns. */
  crlfOctets: number;
}

export interface MailgenResult {
  root: string;
  passwdFile: string;
  /** `user:password` lines in clear, for the load generator's --users-file. */
  accountsFile: string;
  manifestFile: string;
  users: GeneratedUser[];
  totalMessages: number;
  totalOctets: number;
  totalCrlfOctets: number;
}

/** Hashes `password` once with `doveadm pw` (for non-PLAIN schemes). */
export function doveadmHash(scheme: string, password: string): string {
  const out = execFileSync('doveadm', ['-c', '/dev/null', 'pw', '-s', scheme, '-p', password], { encoding: 'utf8' }).trim();
  if (!out.startsWith('{')) throw new Error(`doveadm pw printed an unexpected hash: ${out.slice(0, 40)}`);
  return out;
}

export function generateMail(opts: MailgenOptions): MailgenResult {
  const root = resolve(opts.root);
  const dist = parseSizeDistribution(opts.sizes ?? DEFAULT_SIZES);
  const seed = opts.seed ?? 1;
  const template = opts.userTemplate ?? 'user%d';
  const passwordTemplate = opts.password ?? 'secret';
  const scheme = (opts.scheme ?? 'PLAIN').toUpperCase();
  const host = opts.host ?? 'loadgen';
  const baseTime = opts.baseTime ?? 1_700_000_000;
  const into = opts.into ?? 'new';
  const pid = 4000 + (seed % 1000);
  if (!/^[A-Za-z0-9_.-]+$/.test(host)) throw new UsageError('host must be letters, digits, _ . -');
  if (scheme !== 'PLAIN' && passwordTemplate.includes('%')) {
    throw new UsageError('a hashed --scheme is computed once for all users: use one --password without %d');
  }
  const hashed = scheme === 'PLAIN' ? null : doveadmHash(scheme, passwordTemplate);

  mkdirSync(root, { recursive: true });
  const users: GeneratedUser[] = [];
  const passwdLines: string[] = [];
  const accountLines: string[] = [];
  for (let u = 0; u < opts.users; u++) {
    const user = expandTemplate(template, u + 1);
    const password = expandTemplate(passwordTemplate, u + 1);
    if (!/^[A-Za-z0-9_.@+-]+$/.test(user) || user === 'passwd') throw new UsageError(`unusable user name ${JSON.stringify(user)}`);
    if (/[:\r\n]/.test(password)) throw new UsageError('password must not contain : CR or LF');
    const home = join(root, user);
    const maildir = join(home, 'Maildir');
    if (existsSync(home)) {
      if (opts.force !== true) throw new UsageError(`${home} exists (use --force to replace it)`);
      rmSync(home, { recursive: true, force: true });
    }
    for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(maildir, sub), { recursive: true });

    let octets = 0;
    let crlfOctets = 0;
    for (let k = 0; k < opts.messages; k++) {
      const rng = prng(mix(seed, u, k));
      const size = drawSize(rng, dist);
      const secs = baseTime + k * 61 + u;
      const usecs = Math.floor(rng() * 1_000_000);
      const built = buildMessage(rng, size, {
        'Return-Path': '<loadgen@example.test>',
        'Delivered-To': `${user}@example.test`,
        'Message-ID': `<${seed}.${u + 1}.${k + 1}@loadgen.example.test>`,
        Date: rfc5322Date(secs),
        From: 'Load Generator <loadgen@example.test>',
        To: `${user}@example.test`,
        Subject: `Test message ${k + 1} of ${opts.messages} for ${user}`,
        'MIME-Version': '1.0',
        'Content-Type': 'text/plain; charset=us-ascii',
        'Content-Transfer-Encoding': '7bit',
      });
      const msg = opts.lineEnds === 'crlf' ? Buffer.from(built.toString('latin1').replaceAll('\n', '\r\n'), 'latin1') : built;
      const crlf = opts.lineEnds === 'crlf' ? msg.length : msg.length + countLf(msg);
      const base = `${secs}.M${usecs}P${pid}Q${k + 1}.${host},S=${msg.length},W=${crlf}`;
      const file = join(maildir, into, into === 'cur' ? `${base}:2,` : base);
      writeFileSync(file, msg);
      utimesSync(file, secs, secs);
      octets += msg.length;
      crlfOctets += crlf;
    }
    users.push({ user, password, messages: opts.messages, octets, crlfOctets });
    passwdLines.push(`${user}:${hashed ?? `{PLAIN}${password}`}`);
    accountLines.push(`${user}:${password}`);
  }

  const passwdFile = resolve(opts.passwdFile ?? join(root, 'passwd'));
  const accountsFile = join(root, 'accounts.txt');
  const manifestFile = join(root, 'manifest.json');
  writeFileSync(passwdFile, passwdLines.join('\n') + '\n', { mode: 0o644 });
  writeFileSync(accountsFile, accountLines.join('\n') + '\n', { mode: 0o600 });
  const result: MailgenResult = {
    root,
    passwdFile,
    accountsFile,
    manifestFile,
    users,
    totalMessages: users.reduce((a, x) => a + x.messages, 0),
    totalOctets: users.reduce((a, x) => a + x.octets, 0),
    totalCrlfOctets: users.reduce((a, x) => a + x.crlfOctets, 0),
  };
  writeFileSync(
    manifestFile,
    JSON.stringify({ seed, sizes: dist.spec, scheme, into, ...result, users: users.map(({ password: _p, ...rest }) => rest) }, null, 1) + '\n',
  );
  return result;
}

const USAGE = `Usage: tsx loadtest/src/mailgen.ts --root DIR [options]
  --root DIR            tree root; users go in DIR/<user>/Maildir
  --users N             number of users (default 10)
  --messages M          messages per user (default 20)
  --sizes SPEC          4k | 1k-8k | weighted mix (default ${DEFAULT_SIZES})
  --seed N              PRNG seed (default 1); same seed, same bytes
  --user-template T     user names, %d = 1..N (default user%d)
  --password P          password, %d allowed with PLAIN (default secret)
  --scheme S            PLAIN (default) or a doveadm pw scheme such as SHA512-CRYPT
  --passwd-file F       passwd-file path (default DIR/passwd)
  --into new|cur        deliver into new/ (default) or cur/
  --force               replace existing user Maildirs
  --crlf                write CRLF line ends (as our LMTP delivery does), S= equal to W=
  --json                print the result as JSON
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      root: { type: 'string' },
      users: { type: 'string' },
      messages: { type: 'string' },
      sizes: { type: 'string' },
      seed: { type: 'string' },
      'user-template': { type: 'string' },
      password: { type: 'string' },
      scheme: { type: 'string' },
      'passwd-file': { type: 'string' },
      into: { type: 'string' },
      crlf: { type: 'boolean' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.root === undefined) throw new UsageError('--root is required');
  if (values.into !== undefined && values.into !== 'new' && values.into !== 'cur') throw new UsageError('--into is new or cur');
  const started = performance.now();
  const result = generateMail({
    root: values.root,
    users: intOption('users', values.users, 10, 1),
    messages: intOption('messages', values.messages, 20),
    sizes: values.sizes,
    seed: intOption('seed', values.seed, 1),
    userTemplate: values['user-template'],
    password: values.password,
    scheme: values.scheme,
    passwdFile: values['passwd-file'],
    into: values.into as 'new' | 'cur' | undefined,
    lineEnds: values.crlf ? 'crlf' : 'lf',
    force: values.force,
  });
  if (values.json === true) {
    process.stdout.write(JSON.stringify({ ...result, users: result.users.length }, null, 2) + '\n');
    return;
  }
  const secs = (performance.now() - started) / 1000;
  process.stdout.write(
    `${result.users.length} users, ${result.totalMessages} messages, ${(result.totalOctets / 1e6).toFixed(1)} MB ` +
      `(${(result.totalCrlfOctets / 1e6).toFixed(1)} MB with CRLF) in ${secs.toFixed(1)} s\n` +
      `maildirs:  ${result.root}/<user>/Maildir\npasswd:    ${result.passwdFile}\naccounts:  ${result.accountsFile}\n`,
  );
}

if (isMain(import.meta.url)) runCli(main, USAGE);

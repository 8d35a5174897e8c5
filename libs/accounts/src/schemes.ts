/**
 * Dovecot-compatible password schemes: parsing `{SCHEME}hash` strings, verifying a password
 * against one, and writing new ones. Everything here runs in the calling thread; servers
 * verify through a VerifierPool so the expensive schemes stay off the event loop.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  ARGON2I_DEFAULTS,
  ARGON2ID_DEFAULTS,
  dummyArgon2,
  hashArgon2,
  isArgon2,
  parseArgon2,
  verifyArgon2,
  type Argon2Params,
  type ParsedArgon2,
} from './argon2.js';
import { BCRYPT_COST_DEFAULT, dummyBcrypt, hashBcrypt, isBcrypt, parseBcrypt, verifyBcrypt, type ParsedBcrypt } from './bcrypt.js';
import { AccountsError } from './errors.js';
import {
  CRYPT_ALPHABET,
  SHA_CRYPT_ENCODED_LENGTH,
  SHA_CRYPT_ROUNDS_DEFAULT,
  SHA_CRYPT_ROUNDS_MAX,
  SHA_CRYPT_ROUNDS_MIN,
  shaCryptDigest,
  type ShaCryptVariant,
} from './sha-crypt.js';

/** Schemes that can be verified. CRYPT, CLEARTEXT and CLEAR are aliases resolved while parsing. */
export const VERIFY_SCHEMES = [
  'SHA512-CRYPT',
  'SHA256-CRYPT',
  'BLF-CRYPT',
  'ARGON2ID',
  'ARGON2I',
  'SSHA512',
  'PLAIN',
  'CLEARTEXT',
  'CLEAR',
  'CRYPT',
] as const;

/** Schemes `hashPassword()` can write. */
export const HASH_SCHEMES = ['SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SSHA512', 'PLAIN'] as const;
export type HashScheme = (typeof HASH_SCHEMES)[number];
export const DEFAULT_SCHEME: HashScheme = 'SHA512-CRYPT';

/** The algorithm a stored hash resolved to (after CRYPT detection and aliases). */
export type ResolvedScheme = 'SHA512-CRYPT' | 'SHA256-CRYPT' | 'BLF-CRYPT' | 'ARGON2ID' | 'ARGON2I' | 'SSHA512' | 'PLAIN';

export type ParsedHash =
  | {
      readonly scheme: 'SHA512-CRYPT' | 'SHA256-CRYPT';
      readonly variant: ShaCryptVariant;
      readonly rounds: number;
      /** Whether the hash spelled out `rounds=`. */
      readonly explicitRounds: boolean;
      readonly salt: string;
      /** The 43 or 86 character encoded digest. */
      readonly digest: string;
    }
  | ({ readonly scheme: 'BLF-CRYPT' } & ParsedBcrypt)
  | ({ readonly scheme: 'ARGON2ID' | 'ARGON2I' } & ParsedArgon2)
  | { readonly scheme: 'SSHA512'; readonly digest: Buffer; readonly salt: Buffer }
  | { readonly scheme: 'PLAIN'; readonly password: string };

const ENCODINGS = ['HEX', 'B64', 'BASE64'] as const;
type Encoding = (typeof ENCODINGS)[number];

/** The `{SCHEME}` name as written (upper-cased, without an encoding suffix), or 'CRYPT' when absent. */
export function declaredScheme(stored: string): string {
  const m = /^\{([^}]*)\}/.exec(stored);
  if (!m) return 'CRYPT';
  return m[1]!.toUpperCase().split('.')[0]!;
}

function decodeEncoded(text: string, encoding: Encoding | undefined, what: string): Buffer | null {
  if (encoding === undefined) return null;
  if (encoding === 'HEX') {
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) throw new AccountsError('malformed-hash', `${what}: bad hex`);
    return Buffer.from(text, 'hex');
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, '').length % 4 === 1) {
    throw new AccountsError('malformed-hash', `${what}: bad base64`);
  }
  return Buffer.from(text, 'base64');
}

function parseShaCrypt(hash: string): ParsedHash {
  const variant: ShaCryptVariant = hash.startsWith('$5$') ? 'sha256' : 'sha512';
  const m = /^\$[56]\$(?:rounds=([1-9]\d{0,8})\$)?([^$:]{0,16})\$([./0-9A-Za-z]+)$/.exec(hash);
  if (!m) throw new AccountsError('malformed-hash', `malformed ${variant}-crypt hash`);
  const rounds = m[1] === undefined ? SHA_CRYPT_ROUNDS_DEFAULT : Number(m[1]);
  if (rounds < SHA_CRYPT_ROUNDS_MIN || rounds > SHA_CRYPT_ROUNDS_MAX) {
    throw new AccountsError('malformed-hash', `${variant}-crypt rounds out of range`);
  }
  if (m[3]!.length !== SHA_CRYPT_ENCODED_LENGTH[variant]) {
    throw new AccountsError('malformed-hash', `malformed ${variant}-crypt digest length`);
  }
  return {
    scheme: variant === 'sha256' ? 'SHA256-CRYPT' : 'SHA512-CRYPT',
    variant,
    rounds,
    explicitRounds: m[1] !== undefined,
    salt: m[2]!,
    digest: m[3]!,
  };
}

/** crypt(3)-style detection by the hash's own `$id$`, as Dovecot's CRYPT scheme does. */
function parseCrypt(hash: string): ParsedHash {
  if (hash.startsWith('$6$') || hash.startsWith('$5$')) return parseShaCrypt(hash);
  if (isBcrypt(hash)) return { scheme: 'BLF-CRYPT', ...parseBcrypt(hash) };
  if (isArgon2(hash)) {
    const a = parseArgon2(hash);
    return { scheme: a.type === 'id' ? 'ARGON2ID' : 'ARGON2I', ...a };
  }
  const id = /^\$([0-9a-z]{1,8})\$/.exec(hash)?.[1];
  if (id !== undefined) throw new AccountsError('unsupported-scheme', `unsupported crypt method $${id}$`);
  throw new AccountsError('unsupported-scheme', 'unsupported crypt method (DES or unknown)');
}

/**
 * Parse a stored password (`{SCHEME}data`, or crypt(3) output with no prefix). Throws
 * AccountsError `unsupported-scheme` or `malformed-hash`; messages never contain the hash.
 */
export function parsePasswordHash(stored: string): ParsedHash {
  const m = /^\{([^}]*)\}/.exec(stored);
  if (!m) return parseCrypt(stored);
  const [base, encodingName, ...more] = m[1]!.toUpperCase().split('.');
  const data = stored.slice(m[0].length);
  let encoding: Encoding | undefined;
  if (encodingName !== undefined) {
    if (more.length > 0 || !(ENCODINGS as readonly string[]).includes(encodingName)) {
      throw new AccountsError('unsupported-scheme', `unsupported scheme {${m[1]}}`);
    }
    encoding = encodingName as Encoding;
  }
  switch (base) {
    case 'CRYPT':
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT':
    case 'BLF-CRYPT':
    case 'ARGON2ID':
    case 'ARGON2I': {
      if (encoding !== undefined) throw new AccountsError('unsupported-scheme', `unsupported scheme {${m[1]}}`);
      // Dovecot hands all of these to crypt(3)/libsodium, which detect the method by the
      // hash itself; so do we.
      return parseCrypt(data);
    }
    case 'SSHA512': {
      const raw = decodeEncoded(data, encoding ?? 'BASE64', 'SSHA512')!;
      if (raw.length <= 64) throw new AccountsError('malformed-hash', 'SSHA512 hash without salt');
      return { scheme: 'SSHA512', digest: raw.subarray(0, 64), salt: raw.subarray(64) };
    }
    case 'PLAIN':
    case 'CLEARTEXT':
    case 'CLEAR': {
      const raw = decodeEncoded(data, encoding, base);
      return { scheme: 'PLAIN', password: raw === null ? data : raw.toString('utf8') };
    }
    default:
      throw new AccountsError('unsupported-scheme', `unsupported scheme {${base}}`);
  }
}

/** True for schemes worth running in a worker thread (every crypt method and argon2). */
export function isExpensive(parsed: ParsedHash): boolean {
  return parsed.scheme !== 'PLAIN' && parsed.scheme !== 'SSHA512';
}

/** The plaintext behind a PLAIN entry (what APOP needs), or null. */
export function plaintextOf(parsed: ParsedHash): string | null {
  return parsed.scheme === 'PLAIN' ? parsed.password : null;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  // Compare equal-length buffers either way so the comparison itself takes the same time.
  if (x.length !== y.length) {
    timingSafeEqual(y, y);
    return false;
  }
  return timingSafeEqual(x, y);
}

/**
 * Verify `password` against a stored hash, in this thread. Empty passwords and passwords
 * containing NUL never verify. Throws only for a hash that does not parse.
 */
export async function verifyPasswordHash(password: string, stored: string | ParsedHash): Promise<boolean> {
  const parsed = typeof stored === 'string' ? parsePasswordHash(stored) : stored;
  if (password.length === 0 || password.includes('\0')) return false;
  switch (parsed.scheme) {
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT': {
      const digest = shaCryptDigest(parsed.variant, Buffer.from(password, 'utf8'), Buffer.from(parsed.salt, 'utf8'), parsed.rounds);
      return equalStrings(digest, parsed.digest);
    }
    case 'BLF-CRYPT':
      return verifyBcrypt(password, parsed);
    case 'ARGON2ID':
    case 'ARGON2I':
      return verifyArgon2(password, parsed);
    case 'SSHA512': {
      const digest = createHash('sha512').update(password, 'utf8').update(parsed.salt).digest();
      return timingSafeEqual(digest, parsed.digest);
    }
    case 'PLAIN':
      return equalStrings(password, parsed.password);
  }
}

export interface HashOptions {
  /** SHA-crypt rounds; default 5000, which is then not written into the hash (as Dovecot does). */
  readonly rounds?: number;
  /** bcrypt cost, 4..31; default 10. */
  readonly cost?: number;
  /** Argon2 parameters; defaults are Dovecot's (ARGON2ID m=65536,t=3,p=1; ARGON2I m=32768,t=4,p=1). */
  readonly argon2?: Partial<Argon2Params>;
}

function randomCryptSalt(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += CRYPT_ALPHABET[b & 0x3f];
  return out;
}

function checkHashablePassword(password: string): void {
  if (password.length === 0) throw new AccountsError('invalid-password', 'empty password');
  if (password.includes('\0')) throw new AccountsError('invalid-password', 'password contains NUL');
}

function isPlainSafe(password: string): boolean {
  return /^[\x21-\x39\x3b-\x7e]+$/.test(password);
}

/**
 * Hash a password for a passwd-file, returning `{SCHEME}data`. PLAIN passwords with
 * characters a passwd-file cannot hold verbatim (':', spaces, controls, non-ASCII) are
 * written as `{PLAIN.B64}`. Runs in this thread (meant for the CLI and tests).
 */
export async function hashPassword(password: string, scheme: HashScheme = DEFAULT_SCHEME, options: HashOptions = {}): Promise<string> {
  checkHashablePassword(password);
  switch (scheme) {
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT': {
      const variant: ShaCryptVariant = scheme === 'SHA512-CRYPT' ? 'sha512' : 'sha256';
      const rounds = options.rounds ?? SHA_CRYPT_ROUNDS_DEFAULT;
      if (!Number.isInteger(rounds) || rounds < SHA_CRYPT_ROUNDS_MIN || rounds > SHA_CRYPT_ROUNDS_MAX) {
        throw new RangeError(`rounds must be ${SHA_CRYPT_ROUNDS_MIN}..${SHA_CRYPT_ROUNDS_MAX}`);
      }
      const salt = randomCryptSalt(16);
      const digest = shaCryptDigest(variant, Buffer.from(password, 'utf8'), Buffer.from(salt), rounds);
      const roundsPart = rounds === SHA_CRYPT_ROUNDS_DEFAULT ? '' : `rounds=${rounds}$`;
      return `{${scheme}}$${variant === 'sha512' ? 6 : 5}$${roundsPart}${salt}$${digest}`;
    }
    case 'BLF-CRYPT':
      return `{BLF-CRYPT}${await hashBcrypt(password, options.cost ?? BCRYPT_COST_DEFAULT)}`;
    case 'ARGON2ID':
    case 'ARGON2I': {
      const defaults = scheme === 'ARGON2ID' ? ARGON2ID_DEFAULTS : ARGON2I_DEFAULTS;
      const params = { ...defaults, ...options.argon2 };
      return `{${scheme}}${await hashArgon2(password, scheme === 'ARGON2ID' ? 'id' : 'i', params)}`;
    }
    case 'SSHA512': {
      const salt = randomBytes(16);
      const digest = createHash('sha512').update(password, 'utf8').update(salt).digest();
      return `{SSHA512}${Buffer.concat([digest, salt]).toString('base64')}`;
    }
    case 'PLAIN':
      return isPlainSafe(password) ? `{PLAIN}${password}` : `{PLAIN.B64}${Buffer.from(password, 'utf8').toString('base64')}`;
    default:
      throw new AccountsError('unsupported-scheme', `cannot hash with scheme ${String(scheme)}`);
  }
}

/**
 * What verifying against this hash costs, as a comparable key: the scheme plus its work
 * parameters (`BLF-CRYPT cost=10`). Hashes with the same profile take the same time.
 */
export function costProfile(parsed: ParsedHash): string {
  switch (parsed.scheme) {
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT':
      return `${parsed.scheme} rounds=${parsed.rounds}${parsed.explicitRounds ? '' : ' (default)'}`;
    case 'BLF-CRYPT':
      return `${parsed.scheme} cost=${parsed.cost}`;
    case 'ARGON2ID':
    case 'ARGON2I':
      return `${parsed.scheme} m=${parsed.memoryKiB},t=${parsed.iterations},p=${parsed.parallelism},len=${parsed.digest.length}`;
    case 'SSHA512':
      return `${parsed.scheme} salt=${parsed.salt.length}`;
    case 'PLAIN':
      return 'PLAIN';
  }
}

/**
 * A stored hash with the same scheme and work parameters as `like` that no password
 * matches: verifying against it costs what verifying against `like` costs. Used for unknown
 * users so that "no such user" takes as long as "wrong password".
 */
export function dummyHashLike(like: ParsedHash): string {
  switch (like.scheme) {
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT': {
      const id = like.variant === 'sha512' ? 6 : 5;
      const roundsPart = like.explicitRounds ? `rounds=${like.rounds}$` : '';
      return `{${like.scheme}}$${id}$${roundsPart}${randomCryptSalt(Math.max(like.salt.length, 1))}$${randomCryptSalt(SHA_CRYPT_ENCODED_LENGTH[like.variant])}`;
    }
    case 'BLF-CRYPT':
      return `{BLF-CRYPT}${dummyBcrypt(like.cost)}`;
    case 'ARGON2ID':
    case 'ARGON2I':
      return `{${like.scheme}}${dummyArgon2(like)}`;
    case 'SSHA512':
      return `{SSHA512}${randomBytes(64 + like.salt.length).toString('base64')}`;
    case 'PLAIN':
      return `{PLAIN.B64}${randomBytes(24).toString('base64')}`;
  }
}

/** The dummy used when nothing better is known: SHA512-CRYPT with the default rounds. */
export function defaultDummyHash(): string {
  return dummyHashLike(parsePasswordHash(`$6$${'.'.repeat(16)}$${'.'.repeat(86)}`));
}

/**
 * SHA-256-crypt (`$5$`) and SHA-512-crypt (`$6$`) as specified by Ulrich Drepper
 * ("Unix crypt using SHA-256 and SHA-512", https://www.akkadia.org/drepper/SHA-crypt.txt),
 * built on node:crypto. This is what glibc/libxcrypt `crypt(3)` and Dovecot's
 * SHA256-CRYPT / SHA512-CRYPT schemes compute.
 */
import { createHash, type Hash } from 'node:crypto';

export type ShaCryptVariant = 'sha256' | 'sha512';

export const SHA_CRYPT_ROUNDS_DEFAULT = 5000;
export const SHA_CRYPT_ROUNDS_MIN = 1000;
export const SHA_CRYPT_ROUNDS_MAX = 999_999_999;
export const SHA_CRYPT_SALT_MAX = 16;

/** The crypt(3) alphabet, least significant 6 bits first. */
export const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const PREFIX: Record<ShaCryptVariant, string> = { sha256: '$5$', sha512: '$6$' };
const DIGEST_LENGTH: Record<ShaCryptVariant, number> = { sha256: 32, sha512: 64 };
/** Encoded length of the digest part: 43 for SHA-256, 86 for SHA-512. */
export const SHA_CRYPT_ENCODED_LENGTH: Record<ShaCryptVariant, number> = { sha256: 43, sha512: 86 };

/** Byte order of the final encoding: triples [b2, b1, b0], most significant first (spec step 22). */
const SHA256_ORDER: readonly (readonly number[])[] = [
  [0, 10, 20], [21, 1, 11], [12, 22, 2], [3, 13, 23], [24, 4, 14],
  [15, 25, 5], [6, 16, 26], [27, 7, 17], [18, 28, 8], [9, 19, 29],
];
const SHA512_ORDER: readonly (readonly number[])[] = [
  [0, 21, 42], [22, 43, 1], [44, 2, 23], [3, 24, 45], [25, 46, 4], [47, 5, 26], [6, 27, 48],
  [28, 49, 7], [50, 8, 29], [9, 30, 51], [31, 52, 10], [53, 11, 32], [12, 33, 54], [34, 55, 13],
  [56, 14, 35], [15, 36, 57], [37, 58, 16], [59, 17, 38], [18, 39, 60], [40, 61, 19], [62, 20, 41],
];

function encode24(out: string[], b2: number, b1: number, b0: number, chars: number): void {
  let w = (b2 << 16) | (b1 << 8) | b0;
  for (let i = 0; i < chars; i++) {
    out.push(CRYPT_ALPHABET[w & 0x3f]!);
    w >>>= 6;
  }
}

function encodeDigest(variant: ShaCryptVariant, d: Buffer): string {
  const out: string[] = [];
  if (variant === 'sha256') {
    for (const [a, b, c] of SHA256_ORDER) encode24(out, d[a!]!, d[b!]!, d[c!]!, 4);
    encode24(out, 0, d[31]!, d[30]!, 3);
  } else {
    for (const [a, b, c] of SHA512_ORDER) encode24(out, d[a!]!, d[b!]!, d[c!]!, 4);
    encode24(out, 0, 0, d[63]!, 2);
  }
  return out.join('');
}

/** `source` repeated to exactly `length` bytes (the P and S sequences of the spec). */
function repeatTo(source: Buffer, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let off = 0; off < length; off += source.length) source.copy(out, off, 0, Math.min(source.length, length - off));
  return out;
}

/**
 * The raw digest for a password, salt bytes (at most 16 are used) and a number of rounds,
 * encoded with the crypt alphabet (43 or 86 characters). No clamping: callers pass a valid count.
 */
export function shaCryptDigest(variant: ShaCryptVariant, password: Buffer, salt: Buffer, rounds: number): string {
  const alg = variant;
  const hlen = DIGEST_LENGTH[variant];
  const s = salt.subarray(0, SHA_CRYPT_SALT_MAX);
  const p = password;

  // Steps 4-8: digest B = H(P S P).
  const b = createHash(alg).update(p).update(s).update(p).digest();
  // Steps 1-3, 9-12: digest A.
  const ctxA: Hash = createHash(alg).update(p).update(s);
  let n = p.length;
  for (; n > hlen; n -= hlen) ctxA.update(b);
  ctxA.update(b.subarray(0, n));
  for (let bits = p.length; bits > 0; bits >>>= 1) ctxA.update(bits & 1 ? b : p);
  const a = ctxA.digest();
  // Steps 13-16: DP, then the byte sequence P of length |password|.
  const ctxDP = createHash(alg);
  for (let i = 0; i < p.length; i++) ctxDP.update(p);
  const pSeq = repeatTo(ctxDP.digest(), p.length);
  // Steps 17-20: DS, then the byte sequence S of length |salt|.
  const ctxDS = createHash(alg);
  for (let i = 0; i < 16 + a[0]!; i++) ctxDS.update(s);
  const sSeq = repeatTo(ctxDS.digest(), s.length);
  // Step 21: the rounds.
  let c = a;
  for (let i = 0; i < rounds; i++) {
    const ctx = createHash(alg);
    ctx.update(i & 1 ? pSeq : c);
    if (i % 3 !== 0) ctx.update(sSeq);
    if (i % 7 !== 0) ctx.update(pSeq);
    ctx.update(i & 1 ? c : pSeq);
    c = ctx.digest();
  }
  return encodeDigest(variant, c);
}

/**
 * `crypt(password, setting)` for `$5$` and `$6$` settings, exactly as the spec's reference code:
 * `rounds=N$` is optional, N is clamped to 1000..999999999, the salt stops at `$` or after
 * 16 bytes, and the result repeats `rounds=N$` whenever the setting had it.
 * Throws on a setting that is neither `$5$` nor `$6$`.
 */
export function shaCrypt(password: string | Buffer, setting: string): string {
  let variant: ShaCryptVariant;
  if (setting.startsWith('$5$')) variant = 'sha256';
  else if (setting.startsWith('$6$')) variant = 'sha512';
  else throw new Error('not a SHA-crypt setting');
  let rest = setting.slice(3);
  let rounds = SHA_CRYPT_ROUNDS_DEFAULT;
  let custom = false;
  const m = /^rounds=(\d+)\$/.exec(rest);
  if (m) {
    rounds = Math.max(SHA_CRYPT_ROUNDS_MIN, Math.min(SHA_CRYPT_ROUNDS_MAX, Number(m[1])));
    custom = true;
    rest = rest.slice(m[0].length);
  }
  const end = rest.indexOf('$');
  const saltBytes = Buffer.from(end === -1 ? rest : rest.slice(0, end), 'utf8').subarray(0, SHA_CRYPT_SALT_MAX);
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const digest = shaCryptDigest(variant, pw, saltBytes, rounds);
  return `${PREFIX[variant]}${custom ? `rounds=${rounds}$` : ''}${saltBytes.toString('utf8')}$${digest}`;
}

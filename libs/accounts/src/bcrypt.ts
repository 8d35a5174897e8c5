/**
 * bcrypt (`$2a$`, `$2b$`, `$2y$`) through hash-wasm, with the digest compared in constant time.
 * `$2a$`, `$2b$` and `$2y$` are the same computation for passwords of up to 72 bytes, which is
 * all bcrypt ever reads: longer passwords are truncated to 72 bytes, as crypt(3) does.
 * `$2x$` (crypt_blowfish's deliberately buggy compatibility mode) is not supported.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { bcrypt } from 'hash-wasm';
import { AccountsError } from './errors.js';

/** The bcrypt alphabet (differs from both base64 and the crypt(3) alphabet). */
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < BCRYPT_ALPHABET.length; i++) DECODE[BCRYPT_ALPHABET.charCodeAt(i)] = i;

export const BCRYPT_COST_DEFAULT = 10;
export const BCRYPT_MAX_PASSWORD_BYTES = 72;

export interface ParsedBcrypt {
  readonly minor: 'a' | 'b' | 'y';
  readonly cost: number;
  /** 16 bytes. */
  readonly salt: Buffer;
  /** 23 bytes: bcrypt encodes only 23 of its 24 output bytes. */
  readonly digest: Buffer;
}

const BCRYPT_RE = /^\$2([aby])\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$/;

/** Decode `length` bytes from bcrypt base64 (OpenBSD decode_base64). */
function decodeBcryptBase64(text: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  let o = 0;
  let i = 0;
  const next = (): number => {
    const c = text.charCodeAt(i++);
    const v = c < 128 ? DECODE[c]! : -1;
    if (v < 0) throw new AccountsError('malformed-hash', 'bad character in bcrypt hash');
    return v;
  };
  while (o < length) {
    const c1 = next();
    const c2 = next();
    out[o++] = ((c1 << 2) | ((c2 & 0x30) >> 4)) & 0xff;
    if (o >= length) break;
    const c3 = next();
    out[o++] = (((c2 & 0x0f) << 4) | ((c3 & 0x3c) >> 2)) & 0xff;
    if (o >= length) break;
    const c4 = next();
    out[o++] = (((c3 & 0x03) << 6) | c4) & 0xff;
  }
  return out;
}

function encodeBcryptBase64(data: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < data.length) {
    let c1 = data[i++]!;
    out += BCRYPT_ALPHABET[c1 >> 2];
    c1 = (c1 & 0x03) << 4;
    if (i >= data.length) {
      out += BCRYPT_ALPHABET[c1];
      break;
    }
    let c2 = data[i++]!;
    c1 |= c2 >> 4;
    out += BCRYPT_ALPHABET[c1];
    c1 = (c2 & 0x0f) << 2;
    if (i >= data.length) {
      out += BCRYPT_ALPHABET[c1];
      break;
    }
    c2 = data[i++]!;
    c1 |= c2 >> 6;
    out += BCRYPT_ALPHABET[c1] + BCRYPT_ALPHABET[c2 & 0x3f]!;
  }
  return out;
}

export function isBcrypt(hash: string): boolean {
  return /^\$2[abxy]\$/.test(hash);
}

export function parseBcrypt(hash: string): ParsedBcrypt {
  if (hash.startsWith('$2x$')) throw new AccountsError('unsupported-scheme', 'bcrypt $2x$ hashes are not supported');
  const m = BCRYPT_RE.exec(hash);
  if (!m) throw new AccountsError('malformed-hash', 'malformed bcrypt hash');
  const cost = Number(m[2]);
  if (cost < 4 || cost > 31) throw new AccountsError('malformed-hash', 'bcrypt cost out of range 4..31');
  return {
    minor: m[1] as 'a' | 'b' | 'y',
    cost,
    salt: decodeBcryptBase64(m[3]!, 16),
    digest: decodeBcryptBase64(m[4]!, 23),
  };
}

function truncatePassword(password: string): Buffer {
  return Buffer.from(password, 'utf8').subarray(0, BCRYPT_MAX_PASSWORD_BYTES);
}

async function rawBcrypt(password: Buffer, salt: Buffer, cost: number): Promise<Buffer> {
  const out = await bcrypt({ password, salt, costFactor: cost, outputType: 'binary' });
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

export async function verifyBcrypt(password: string, parsed: ParsedBcrypt): Promise<boolean> {
  const pw = truncatePassword(password);
  if (pw.length === 0) return false;
  const computed = await rawBcrypt(pw, parsed.salt, parsed.cost);
  return timingSafeEqual(computed.subarray(0, 23), parsed.digest);
}

/** A new `$2y$` hash (the variant Dovecot writes). */
export async function hashBcrypt(password: string, cost: number = BCRYPT_COST_DEFAULT): Promise<string> {
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) throw new RangeError('bcrypt cost must be 4..31');
  const salt = randomBytes(16);
  const digest = await rawBcrypt(truncatePassword(password), salt, cost);
  return `$2y$${String(cost).padStart(2, '0')}$${encodeBcryptBase64(salt)}${encodeBcryptBase64(digest.subarray(0, 23))}`;
}

/** A well-formed `$2y$` hash of the given cost that no password matches (for unknown users). */
export function dummyBcrypt(cost: number): string {
  return `$2y$${String(cost).padStart(2, '0')}$${encodeBcryptBase64(randomBytes(16))}${encodeBcryptBase64(randomBytes(23))}`;
}

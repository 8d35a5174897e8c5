/**
 * Argon2i / Argon2id in the PHC encoding that libsodium and Dovecot write
 * (`$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>`, unpadded base64), computed by hash-wasm and
 * compared in constant time.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { argon2i, argon2id } from 'hash-wasm';
import { AccountsError } from './errors.js';

export type Argon2Type = 'i' | 'id';

export interface Argon2Params {
  /** Memory in KiB. */
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
}

export interface ParsedArgon2 extends Argon2Params {
  readonly type: Argon2Type;
  readonly salt: Buffer;
  readonly digest: Buffer;
}

/** What `doveadm pw -s ARGON2ID` writes by default. */
export const ARGON2ID_DEFAULTS: Argon2Params = { memoryKiB: 65536, iterations: 3, parallelism: 1 };
/** What `doveadm pw -s ARGON2I` writes by default. */
export const ARGON2I_DEFAULTS: Argon2Params = { memoryKiB: 32768, iterations: 4, parallelism: 1 };
/** 4 GiB: the most a 32-bit WebAssembly memory can address. */
const MAX_MEMORY_KIB = 4 * 1024 * 1024;

const ARGON2_RE = /^\$argon2(id|i)\$v=19\$m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export function isArgon2(hash: string): boolean {
  return hash.startsWith('$argon2');
}

function b64(text: string): Buffer {
  if (text.length % 4 === 1) throw new AccountsError('malformed-hash', 'bad base64 length in argon2 hash');
  return Buffer.from(text, 'base64');
}

export function parseArgon2(hash: string): ParsedArgon2 {
  if (/^\$argon2d\$/.test(hash)) throw new AccountsError('unsupported-scheme', 'argon2d hashes are not supported');
  const m = ARGON2_RE.exec(hash);
  if (!m) throw new AccountsError('malformed-hash', 'malformed argon2 hash (expected $argon2{i,id}$v=19$m=..,t=..,p=..$salt$hash)');
  const memoryKiB = Number(m[2]);
  const iterations = Number(m[3]);
  const parallelism = Number(m[4]);
  const salt = b64(m[5]!);
  const digest = b64(m[6]!);
  if (iterations < 1 || parallelism < 1 || parallelism > 255) throw new AccountsError('malformed-hash', 'argon2 t/p out of range');
  if (memoryKiB < 8 * parallelism || memoryKiB > MAX_MEMORY_KIB) throw new AccountsError('malformed-hash', 'argon2 memory out of range');
  if (salt.length < 8) throw new AccountsError('malformed-hash', 'argon2 salt shorter than 8 bytes');
  if (digest.length < 4) throw new AccountsError('malformed-hash', 'argon2 hash shorter than 4 bytes');
  return { type: m[1] as Argon2Type, memoryKiB, iterations, parallelism, salt, digest };
}

async function rawArgon2(type: Argon2Type, password: Buffer, salt: Buffer, params: Argon2Params, length: number): Promise<Buffer> {
  const options = {
    password,
    salt,
    iterations: params.iterations,
    parallelism: params.parallelism,
    memorySize: params.memoryKiB,
    hashLength: length,
    outputType: 'binary' as const,
  };
  const out = type === 'id' ? await argon2id(options) : await argon2i(options);
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

export async function verifyArgon2(password: string, parsed: ParsedArgon2): Promise<boolean> {
  const pw = Buffer.from(password, 'utf8');
  if (pw.length === 0) return false;
  const computed = await rawArgon2(parsed.type, pw, parsed.salt, parsed, parsed.digest.length);
  return timingSafeEqual(computed, parsed.digest);
}

function encode(type: Argon2Type, params: Argon2Params, salt: Buffer, digest: Buffer): string {
  const b = (x: Buffer): string => x.toString('base64').replace(/=+$/, '');
  return `$argon2${type}$v=19$m=${params.memoryKiB},t=${params.iterations},p=${params.parallelism}$${b(salt)}$${b(digest)}`;
}

export async function hashArgon2(password: string, type: Argon2Type, params: Argon2Params): Promise<string> {
  const salt = randomBytes(16);
  const digest = await rawArgon2(type, Buffer.from(password, 'utf8'), salt, params, 32);
  return encode(type, params, salt, digest);
}

/** A well-formed hash with the same parameters that no password matches (for unknown users). */
export function dummyArgon2(parsed: ParsedArgon2): string {
  return encode(parsed.type, parsed, randomBytes(parsed.salt.length), randomBytes(parsed.digest.length));
}

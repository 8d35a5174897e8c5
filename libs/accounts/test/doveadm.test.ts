// Interoperability with the real Dovecot: hashes doveadm writes verify here, and hashes
// written here verify in doveadm. Needs /usr/bin/doveadm (Debian package dovecot-core);
// without it these tests fail, they do not skip.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { hashPassword, HASH_SCHEMES, parsePasswordHash, verifyPasswordHash, VerifierPool } from '../src/index.js';

const run = promisify(execFile);
// `-c /dev/null`: no dependency on whatever /etc/dovecot holds.
const DOVEADM = ['-c', '/dev/null'];

async function doveadmHash(scheme: string, password: string, rounds?: number): Promise<string> {
  const args = [...DOVEADM, 'pw', '-s', scheme, '-p', password, ...(rounds === undefined ? [] : ['-r', String(rounds)])];
  const { stdout } = await run('doveadm', args);
  return stdout.trim();
}

/** doveadm's own verdict: exit 0 and "(verified)" on a match. */
async function doveadmAccepts(stored: string, password: string): Promise<boolean> {
  try {
    const { stdout } = await run('doveadm', [...DOVEADM, 'pw', '-t', stored, '-p', password]);
    return stdout.includes('(verified)');
  } catch (e) {
    const err = e as { code?: unknown; stderr?: string };
    if (err.code === 'ENOENT') throw new Error('doveadm is not installed (apt-get install dovecot-core)');
    if (typeof err.code === 'number' && err.code !== 0) return false;
    throw e;
  }
}

const PASSWORDS = ['secret', 'pässwörd € ✓', 'with:colon and spaces', 'x'.repeat(100)];

describe('doveadm interoperability', () => {
  before(async () => {
    try {
      await run('doveadm', [...DOVEADM, 'pw', '-l']);
    } catch (e) {
      throw new Error(`doveadm is required for these tests and could not run: ${(e as Error).message}`);
    }
  });

  const fromDoveadm: [scheme: string, rounds?: number][] = [
    ['SHA512-CRYPT'],
    ['SHA512-CRYPT', 7000],
    ['SHA256-CRYPT'],
    ['SHA256-CRYPT', 1000],
    ['BLF-CRYPT'],
    ['BLF-CRYPT', 6],
    ['ARGON2ID'],
    ['ARGON2I'],
    ['SSHA512'],
    ['SSHA512.HEX'],
    ['PLAIN'],
    ['PLAIN.B64'],
    ['CLEARTEXT'],
    ['CRYPT'],
  ];
  for (const [scheme, rounds] of fromDoveadm) {
    it(`accepts doveadm ${scheme}${rounds ? ` -r ${rounds}` : ''} hashes`, async () => {
      const pool = new VerifierPool({ size: 2 });
      try {
        const passwords = scheme.startsWith('ARGON2') ? PASSWORDS.slice(0, 2) : PASSWORDS;
        for (const password of passwords) {
          const stored = await doveadmHash(scheme, password, rounds);
          assert.ok(stored.startsWith(`{${scheme}}`), stored);
          assert.equal(await pool.verify(password, stored), true, `${scheme} ${password}`);
          // bcrypt ignores bytes past 72, for Dovecot as for us.
          const bcryptLong = stored.includes('$2y$') && Buffer.byteLength(password) > 72;
          assert.equal(await pool.verify(`${password}!`, stored), bcryptLong, `${scheme} longer password`);
          assert.equal(await pool.verify(`!${password.slice(1)}`, stored), false, `${scheme} wrong first character`);
          assert.equal(await verifyPasswordHash('wrong', stored), false);
        }
        // A prefix-less copy is CRYPT to us as to Dovecot's passwd-file.
        const stored = await doveadmHash(scheme, 'secret', rounds);
        if (/^\{[A-Z0-9-]+\}\$/.test(stored)) {
          const bare = stored.slice(stored.indexOf('}') + 1);
          assert.equal(await pool.verify('secret', bare), true);
          assert.ok(parsePasswordHash(bare));
        }
      } finally {
        await pool.close();
      }
    });
  }

  for (const scheme of HASH_SCHEMES) {
    it(`doveadm accepts our ${scheme} hashes and refuses wrong passwords`, async () => {
      // Argon2 costs about half a second per hash in WebAssembly: two passwords suffice.
      for (const password of scheme.startsWith('ARGON2') ? PASSWORDS.slice(0, 2) : PASSWORDS) {
        const stored = await hashPassword(password, scheme);
        assert.equal(await doveadmAccepts(stored, password), true, `${scheme} ${password}`);
        assert.equal(await doveadmAccepts(stored, 'wrong'), false, `${scheme} wrong`);
      }
    });
  }

  it('doveadm accepts our SHA512-CRYPT with rounds= and BLF-CRYPT with another cost', async () => {
    assert.equal(await doveadmAccepts(await hashPassword('secret', 'SHA512-CRYPT', { rounds: 12000 }), 'secret'), true);
    assert.equal(await doveadmAccepts(await hashPassword('secret', 'BLF-CRYPT', { cost: 5 }), 'secret'), true);
    assert.equal(await doveadmAccepts(await hashPassword('secret', 'ARGON2ID', { argon2: { memoryKiB: 8192, iterations: 2 } }), 'secret'), true);
  });
});

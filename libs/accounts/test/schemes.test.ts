import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  costProfile,
  declaredScheme,
  defaultDummyHash,
  dummyHashLike,
  hashPassword,
  HASH_SCHEMES,
  isExpensive,
  parsePasswordHash,
  plaintextOf,
  verifyPasswordHash,
} from '../src/index.js';

// Written by `doveadm pw -s SCHEME -p secret` (Dovecot 2.3.19, Debian 12).
const DOVEADM_SECRET = {
  'SHA512-CRYPT': '{SHA512-CRYPT}$6$jYVJ431UdTlzShe2$GczgCVIkJwPnD9gjhj9tgvcUR8JpJCSzUZ9H2hQ0JVoLKUDRAKpxrIXmAasxd742mTMfgV7Tr9YBx7GyOez/A0',
  'SHA256-CRYPT': '{SHA256-CRYPT}$5$SOYxdhuF9PLDOaUl$DoE8F.H1/ghmlyWFOP79njUlmdFi4bU2r6G3hkaxmND',
  'BLF-CRYPT': '{BLF-CRYPT}$2y$05$xC1t3z5.4QH321TQaI6CO.Dj45g9b7JNiVOZFjQy84PxmGdNqM.IG',
  ARGON2ID: '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$9GkdxfDpc8rilx9ZkmZBqQ$HAr8q6UV/uSgAXbg+UPsxFXINbtzlM5YDpMuf3YCVYo',
  ARGON2I: '{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$pcaf2dI/DFLXPjKoL8vxKQ$K3xTcTvIiZtX+MeuDBASSH0lay1Uyu1Vk0NVgiv/KaQ',
  SSHA512: '{SSHA512}jMUyd/2cav850R9B8yskxUzu1Y959GxN/Vu6AID90mRhUzuXHcblPGaGLb3UHy6KdKL4wpYqIY4F8jFMwgcXqUnr7hU=',
  'SSHA512.HEX':
    '{SSHA512.HEX}ae9c3e065848fa478499baff1e9bf7cd793832ab094f9fba49ff4767b0920b9acda61ea3a0df4030c355ea85c839d81b0942d40d6c44f22448488f8820caa7c060e59b8a',
  PLAIN: '{PLAIN}secret',
  CRYPT: '{CRYPT}$2y$05$upvCGmd.gWxFOnr4dGPNkeuzL13H9rnOhFa4AahKPvZGIKKYQXeLO',
};

describe('password schemes', () => {
  for (const [name, stored] of Object.entries(DOVEADM_SECRET)) {
    it(`verifies a doveadm ${name} hash`, async () => {
      assert.equal(await verifyPasswordHash('secret', stored), true);
      assert.equal(await verifyPasswordHash('Secret', stored), false);
      assert.equal(await verifyPasswordHash('secret ', stored), false);
    });
  }

  it('treats a hash without {SCHEME} as CRYPT and detects the method', () => {
    const bare = DOVEADM_SECRET['SHA512-CRYPT'].replace('{SHA512-CRYPT}', '');
    assert.equal(declaredScheme(bare), 'CRYPT');
    assert.equal(parsePasswordHash(bare).scheme, 'SHA512-CRYPT');
    assert.equal(parsePasswordHash(DOVEADM_SECRET['SHA256-CRYPT'].replace('{SHA256-CRYPT}', '')).scheme, 'SHA256-CRYPT');
    assert.equal(parsePasswordHash(DOVEADM_SECRET.CRYPT.replace('{CRYPT}', '')).scheme, 'BLF-CRYPT');
    assert.equal(parsePasswordHash(DOVEADM_SECRET.ARGON2ID.replace('{ARGON2ID}', '')).scheme, 'ARGON2ID');
  });

  it('scheme names are case-insensitive and CLEARTEXT is PLAIN', async () => {
    assert.equal(await verifyPasswordHash('secret', '{plain}secret'), true);
    assert.equal(await verifyPasswordHash('secret', '{CLEARTEXT}secret'), true);
    assert.equal(await verifyPasswordHash('secret', '{sha512-crypt}' + DOVEADM_SECRET['SHA512-CRYPT'].slice(14)), true);
  });

  it('decodes {PLAIN.B64} and {PLAIN.HEX}', async () => {
    assert.equal(await verifyPasswordHash('a:b', '{PLAIN.B64}YTpi'), true);
    assert.equal(await verifyPasswordHash('a:b', '{PLAIN.HEX}613a62'), true);
    assert.equal(plaintextOf(parsePasswordHash('{PLAIN.b64}YTpi')), 'a:b');
  });

  // Known bcrypt answers (crypt_blowfish / OpenBSD test vectors).
  const BCRYPT_VECTORS: [string, string][] = [
    ['U*U', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
    ['U*U*', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK'],
    ['U*U*U', '$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a'],
    [
      '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored',
      '$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui',
    ],
  ];
  for (const [password, hash] of BCRYPT_VECTORS) {
    it(`bcrypt vector ${hash.slice(0, 12)}… in $2a$, $2b$ and $2y$ spelling`, async () => {
      for (const minor of ['a', 'b', 'y']) {
        const stored = `{BLF-CRYPT}$2${minor}$${hash.slice(4)}`;
        assert.equal(await verifyPasswordHash(password, stored), true, stored);
        // Appending a character changes the answer unless the password is already past 72 bytes.
        assert.equal(await verifyPasswordHash(`${password}!`, stored), password.length >= 72, stored);
        assert.equal(await verifyPasswordHash(password.slice(1), stored), false, stored);
      }
    });
  }

  it('bcrypt reads only the first 72 bytes of a password', async () => {
    const long = 'x'.repeat(72);
    const stored = await hashPassword(long, 'BLF-CRYPT', { cost: 4 });
    assert.equal(await verifyPasswordHash(`${long}anything`, stored), true);
    assert.equal(await verifyPasswordHash('x'.repeat(71), stored), false);
  });

  it('refuses $2x$ and unknown crypt methods as unsupported, garbage as malformed', () => {
    assert.throws(() => parsePasswordHash('$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'), { code: 'unsupported-scheme' });
    assert.throws(() => parsePasswordHash('{MD5-CRYPT}$1$U45k5y5e$HUv43uZ5W2bTfDvO6Sxuo0'), { code: 'unsupported-scheme' });
    assert.throws(() => parsePasswordHash('$y$j9T$abc$def'), { code: 'unsupported-scheme' });
    assert.throws(() => parsePasswordHash('{SHA512}abc'), { code: 'unsupported-scheme' });
    assert.throws(() => parsePasswordHash('{BLF-CRYPT.HEX}00'), { code: 'unsupported-scheme' });
    assert.throws(() => parsePasswordHash('$2y$05$short'), { code: 'malformed-hash' });
    assert.throws(() => parsePasswordHash('$2y$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'), { code: 'malformed-hash' });
    assert.throws(() => parsePasswordHash('$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA'), { code: 'malformed-hash' }); // salt < 8 bytes
    assert.throws(() => parsePasswordHash('$argon2id$v=16$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g'), { code: 'malformed-hash' });
    assert.throws(() => parsePasswordHash('{SSHA512}c2hvcnQ='), { code: 'malformed-hash' });
    assert.throws(() => parsePasswordHash('{SSHA512.HEX}xyz'), { code: 'malformed-hash' });
  });

  it('error messages never contain the hash', () => {
    const secretish = '$6$saltsalt$' + 'Q'.repeat(80);
    try {
      parsePasswordHash(secretish);
      assert.fail('should throw');
    } catch (e) {
      assert.ok(!(e as Error).message.includes('QQQQ'));
    }
  });

  it('empty passwords and passwords with NUL never verify', async () => {
    assert.equal(await verifyPasswordHash('', '{PLAIN}'), false);
    const stored = await hashPassword('secret', 'SSHA512');
    assert.equal(await verifyPasswordHash('', stored), false);
    assert.equal(await verifyPasswordHash('secret\0', stored), false);
    await assert.rejects(hashPassword(''), { code: 'invalid-password' });
    await assert.rejects(hashPassword('a\0b'), { code: 'invalid-password' });
  });

  for (const scheme of HASH_SCHEMES) {
    it(`hashPassword(${scheme}) round-trips, including non-ASCII and ':'`, async () => {
      const options = { cost: 4, argon2: { memoryKiB: 1024, iterations: 1 } };
      const stored = await hashPassword('pässw:rd', scheme, options);
      assert.ok(stored.startsWith(`{${scheme}`), stored);
      assert.ok(!stored.includes(':'), 'a passwd-file field cannot hold ":"');
      assert.equal(await verifyPasswordHash('pässw:rd', stored), true);
      assert.equal(await verifyPasswordHash('passw:rd', stored), false);
    });
  }

  it('writes ARGON2ID with Dovecot defaults and BLF-CRYPT as $2y$ cost 10', async () => {
    assert.match(await hashPassword('pw', 'ARGON2ID'), /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.match(await hashPassword('pw', 'BLF-CRYPT'), /^\{BLF-CRYPT\}\$2y\$10\$[./A-Za-z0-9]{53}$/);
  });

  it('PLAIN is written verbatim when safe, base64 otherwise', async () => {
    assert.equal(await hashPassword('tanstaaf', 'PLAIN'), '{PLAIN}tanstaaf');
    assert.equal(await hashPassword('a b', 'PLAIN'), '{PLAIN.B64}YSBi');
  });

  it('only PLAIN and SSHA512 are cheap enough to verify inline', () => {
    assert.equal(isExpensive(parsePasswordHash('{PLAIN}x')), false);
    assert.equal(isExpensive(parsePasswordHash(DOVEADM_SECRET.SSHA512)), false);
    for (const s of ['SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT', 'ARGON2ID', 'ARGON2I'] as const) {
      assert.equal(isExpensive(parsePasswordHash(DOVEADM_SECRET[s])), true, s);
    }
  });

  it('dummy hashes keep the scheme and cost of their model and match nothing', async () => {
    for (const stored of Object.values(DOVEADM_SECRET)) {
      const model = parsePasswordHash(stored);
      const dummy = dummyHashLike(model);
      assert.equal(costProfile(parsePasswordHash(dummy)), costProfile(model), stored);
      assert.notEqual(dummy, stored);
    }
    const rounds = parsePasswordHash('$6$rounds=7000$abc$' + '.'.repeat(86));
    assert.equal(costProfile(parsePasswordHash(dummyHashLike(rounds))), 'SHA512-CRYPT rounds=7000');
    assert.equal(costProfile(parsePasswordHash(defaultDummyHash())), 'SHA512-CRYPT rounds=5000 (default)');
    assert.equal(await verifyPasswordHash('secret', dummyHashLike(parsePasswordHash('{PLAIN}secret'))), false);
  });
});

import assert from 'node:assert/strict';
import { appendFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  AccountsError,
  costProfile,
  hashPassword,
  parsePasswordHash,
  PasswdFileBackend,
  writeFileAtomic,
  type PasswdFileBackendOptions,
  type PasswdFileWarning,
} from '../src/index.js';
import { CountingVerifier, eventually, tempDir } from './helpers.js';

async function fixture(
  text: string,
  options: Partial<PasswdFileBackendOptions> = {},
): Promise<{ backend: PasswdFileBackend; path: string; verifier: CountingVerifier; warnings: PasswdFileWarning[] }> {
  const dir = await tempDir();
  const path = join(dir, 'passwd');
  await writeFile(path, text, { mode: 0o600 });
  const verifier = new CountingVerifier();
  const warnings: PasswdFileWarning[] = [];
  const backend = await PasswdFileBackend.open({ path, verifier, watch: false, onWarning: (w) => warnings.push(w), ...options });
  return { backend, path, verifier, warnings };
}

const alice = await hashPassword('alice-pw', 'SHA512-CRYPT');
const bob = await hashPassword('bob-pw', 'SHA512-CRYPT');
const carol = await hashPassword('carol-pw', 'BLF-CRYPT', { cost: 4 });

describe('PasswdFileBackend', () => {
  it('verifies users of a Dovecot passwd-file', async () => {
    const { backend } = await fixture(
      [
        '# staff',
        `alice:${alice}:1000:1000::/home/alice:/bin/false`,
        '',
        `Bob@Example.COM:${bob}`,
        `carol:${carol}::::::`,
      ].join('\n'),
    );
    const ok = await backend.verifyPassword({ username: 'alice', password: 'alice-pw' });
    assert.deepEqual(ok, { ok: true, account: { username: 'alice', mailboxId: 'alice', backend: 'passwd-file' } });
    const bobOk = await backend.verifyPassword({ username: 'bob@example.com', password: 'bob-pw' });
    assert.ok(bobOk.ok);
    assert.deepEqual(bobOk.account, { username: 'Bob@Example.COM', mailboxId: 'bob@example.com', backend: 'passwd-file' });
    assert.ok((await backend.verifyPassword({ username: 'CAROL', password: 'carol-pw' })).ok);
    assert.equal(backend.size, 3);
    await backend.close();
  });

  it('unknown user and wrong password: same result, one verification each, same cost', async () => {
    const { backend, verifier } = await fixture(`alice:${alice}\nbob:${bob}\ncarol:${carol}\n`);
    const wrong = await backend.verifyPassword({ username: 'alice', password: 'nope' });
    assert.equal(verifier.calls.length, 1);
    assert.equal(verifier.calls[0]!.hash, alice);
    const unknown = await backend.verifyPassword({ username: 'mallory', password: 'nope' });
    assert.equal(verifier.calls.length, 2);
    assert.deepEqual(unknown, wrong);
    assert.equal(unknown.ok, false);
    // The dummy has the scheme and cost of the file's most common entry.
    const dummy = verifier.calls[1]!.hash;
    assert.notEqual(dummy, alice);
    assert.equal(costProfile(parsePasswordHash(dummy)), costProfile(parsePasswordHash(alice)));
    // And unknown users are always checked against the same dummy.
    await backend.verifyPassword({ username: 'eve', password: 'x' });
    assert.equal(verifier.calls[2]!.hash, dummy);
    await backend.close();
  });

  it('picks the dummy from the most common cost profile, or the dummyHash option', async () => {
    const c2 = await hashPassword('c2', 'BLF-CRYPT', { cost: 4 });
    const { backend, verifier } = await fixture(`alice:${alice}\ncarol:${carol}\ncarol2:${c2}\n`);
    await backend.verifyPassword({ username: 'nobody', password: 'x' });
    assert.equal(costProfile(parsePasswordHash(verifier.calls[0]!.hash)), 'BLF-CRYPT cost=4');
    await backend.close();
    const fixed = await hashPassword('zzz', 'SSHA512');
    const other = await fixture(`alice:${alice}\n`, { dummyHash: fixed });
    await other.backend.verifyPassword({ username: 'nobody', password: 'x' });
    assert.equal(other.verifier.calls[0]!.hash, fixed);
    await other.backend.close();
  });

  it('refuses empty passwords without verifying', async () => {
    const { backend, verifier } = await fixture(`alice:${alice}\nempty:{PLAIN}\n`);
    for (const username of ['alice', 'empty', 'nobody']) {
      const r = await backend.verifyPassword({ username, password: '' });
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.failure, 'invalid');
    }
    assert.equal(verifier.calls.length, 0);
    await backend.close();
  });

  it('users without a usable password receive mail but cannot log in (still one dummy verification)', async () => {
    const { backend, verifier, warnings } = await fixture(`nopw:\nold:{MD5-CRYPT}$1$U45k5y5e$HUv43uZ5W2bTfDvO6Sxuo0\nalice:${alice}\n`);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /passwd:2: user old: unsupported scheme \{MD5-CRYPT\}; the user cannot log in$/);
    assert.ok(!warnings[0]!.message.includes('HUv43'));
    for (const username of ['nopw', 'old']) {
      assert.deepEqual(await backend.verifyPassword({ username, password: 'x' }), await backend.verifyPassword({ username: 'nobody', password: 'x' }));
      assert.ok(await backend.lookup(username));
    }
    assert.equal(verifier.calls.length, 4);
    await backend.close();
  });

  it('nologin refuses only after the right password', async () => {
    const { backend } = await fixture(`alice:${alice}::::::nologin reason=moved\n`);
    const right = await backend.verifyPassword({ username: 'alice', password: 'alice-pw' });
    assert.equal(!right.ok && right.failure, 'refused');
    const wrong = await backend.verifyPassword({ username: 'alice', password: 'x' });
    assert.equal(!wrong.ok && wrong.failure, 'invalid');
    await backend.close();
  });

  it('skips malformed lines with a warning naming file and line, never the hash', async () => {
    const { backend, warnings, path } = await fixture(
      [
        `alice:${alice}`,
        'just-a-name-no-colon',
        'bad user:{PLAIN}topsecret1',
        ':{PLAIN}topsecret2',
        `alice:{PLAIN}topsecret3`,
        '#comment:{PLAIN}notauser',
        '   ',
        `bob:${bob}`,
      ].join('\r\n'),
    );
    assert.deepEqual(
      warnings.map((w) => [w.file, w.line]),
      [
        [path, 2],
        [path, 3],
        [path, 4],
        [path, 5],
      ],
    );
    for (const w of warnings) {
      assert.ok(w.message.startsWith(`${path}:${w.line}: `), w.message);
      assert.ok(!/topsecret|\$6\$/.test(w.message), w.message);
    }
    assert.match(warnings[3]!.message, /duplicate user alice/);
    assert.ok((await backend.verifyPassword({ username: 'alice', password: 'alice-pw' })).ok, 'first alice wins');
    assert.ok((await backend.verifyPassword({ username: 'bob', password: 'bob-pw' })).ok, 'CRLF line endings');
    assert.equal(backend.size, 2);
    await backend.close();
  });

  it('resolves recipients: exact address, or local part for users without a domain', async () => {
    const { backend } = await fixture(`alice:${alice}\nbob@example.com:${bob}\n`);
    assert.equal((await backend.lookup('alice'))?.mailboxId, 'alice');
    assert.equal((await backend.lookup('Alice@Any.Example'))?.mailboxId, 'alice');
    assert.equal((await backend.lookup('<alice@example.net>'))?.mailboxId, 'alice');
    assert.equal((await backend.lookup('bob@EXAMPLE.com'))?.mailboxId, 'bob@example.com');
    assert.equal(await backend.lookup('bob'), null, 'a user with a domain is not found by local part');
    assert.equal(await backend.lookup('bob@example.org'), null);
    assert.equal(await backend.lookup('carol@example.com'), null);
    assert.equal(await backend.lookup(''), null);
    assert.equal(await backend.lookup('@example.com'), null);
    await backend.close();
  });

  it('localDomains restricts local-part matching', async () => {
    const { backend } = await fixture(`alice:${alice}\n`, { localDomains: ['Example.com'] });
    assert.ok(await backend.lookup('alice@example.com'));
    assert.equal(await backend.lookup('alice@elsewhere.net'), null);
    assert.ok(await backend.lookup('alice'));
    await backend.close();
  });

  it('hasLogin reports login names only', async () => {
    const { backend } = await fixture(`alice:${alice}\n`);
    assert.equal(await backend.hasLogin('ALICE'), true);
    assert.equal(await backend.hasLogin('alice@example.com'), false);
    await backend.close();
  });

  describe('APOP', () => {
    // RFC 1939 section 7.
    const timestamp = '<1896.697170952@dbc.mtview.ca.us>';
    const digest = 'c4c9334bac560ecc979e58001b3e22fb';

    it('is supported only when some user has a PLAIN password', async () => {
      const none = await fixture(`alice:${alice}\n`);
      assert.equal(none.backend.supportsApop(), false);
      await none.backend.close();
      const some = await fixture(`alice:${alice}\nmrose:{PLAIN}tanstaaf\n`);
      assert.equal(some.backend.supportsApop(), true);
      await some.backend.close();
    });

    it('verifies the RFC 1939 example, in either hex case, for PLAIN and PLAIN.B64', async () => {
      const b64 = Buffer.from('tanstaaf').toString('base64');
      const { backend } = await fixture(`mrose:{PLAIN}tanstaaf\nmrose2:{PLAIN.B64}${b64}\n`);
      assert.ok((await backend.verifyApop({ username: 'mrose', timestamp, digest })).ok);
      assert.ok((await backend.verifyApop({ username: 'mrose', timestamp, digest: digest.toUpperCase() })).ok);
      assert.ok((await backend.verifyApop({ username: 'MRose2', timestamp, digest })).ok);
      const wrongStamp = await backend.verifyApop({ username: 'mrose', timestamp: '<1.2@x>', digest });
      assert.equal(!wrongStamp.ok && wrongStamp.failure, 'invalid');
      const garbage = await backend.verifyApop({ username: 'mrose', timestamp, digest: 'zz' });
      assert.equal(!garbage.ok && garbage.failure, 'invalid');
      await backend.close();
    });

    it('fails as invalid for hashed and unknown users, identically', async () => {
      const { backend } = await fixture(`alice:${alice}\nmrose:{PLAIN}tanstaaf\n`);
      const hashed = await backend.verifyApop({ username: 'alice', timestamp, digest });
      const unknown = await backend.verifyApop({ username: 'nobody', timestamp, digest });
      assert.equal(!hashed.ok && hashed.failure, 'invalid');
      assert.deepEqual(hashed, unknown);
      await backend.close();
    });
  });

  it('maps verifier errors to temporary and propagates aborts', async () => {
    const { backend, verifier } = await fixture(`alice:${alice}\n`);
    verifier.failWith = new AccountsError('busy', 'queue full');
    const r = await backend.verifyPassword({ username: 'alice', password: 'alice-pw' });
    assert.equal(!r.ok && r.failure, 'temporary');
    verifier.failWith = null;
    await assert.rejects(backend.verifyPassword({ username: 'alice', password: 'alice-pw' }, AbortSignal.abort()), { name: 'AbortError' });
    await assert.rejects(backend.lookup('alice', AbortSignal.abort()), { name: 'AbortError' });
    await backend.close();
  });

  describe('reloading', () => {
    it('picks up an atomic rename-replace through the directory watch', async () => {
      const t = 0;
      const reloads: number[] = [];
      const { backend, path } = await fixture(`alice:${alice}\n`, { watch: true, now: () => t, onReload: (i) => reloads.push(i.users) });
      assert.equal(await backend.lookup('bob'), null);
      // The clock stands still, so only the watch can notice.
      await writeFileAtomic(path, `alice:${alice}\nbob:${bob}\n`);
      await eventually(async () => (await backend.lookup('bob')) !== null);
      assert.ok((await backend.verifyPassword({ username: 'bob', password: 'bob-pw' })).ok);
      // An editor-style save: write a new file, rename it over the old one.
      await writeFile(`${path}.swp`, `bob:${bob}\n`);
      await rename(`${path}.swp`, path);
      await eventually(async () => (await backend.lookup('alice')) === null);
      assert.deepEqual(reloads.slice(0, 1), [1]);
      await backend.close();
    });

    it('without the watch, stats the file at most once per interval', async () => {
      let t = 10_000;
      const { backend, path } = await fixture(`alice:${alice}\n`, { now: () => t });
      await writeFileAtomic(path, `alice:${alice}\nbob:${bob}\n`);
      t += 999;
      assert.equal(await backend.lookup('bob'), null, 'within the interval: old data');
      t += 1;
      assert.ok(await backend.lookup('bob'), 'after the interval: reloaded');
      // An in-place append (same inode) is noticed too.
      await appendFile(path, `carol:${carol}\n`);
      t += 1000;
      assert.ok(await backend.lookup('carol'));
      await backend.close();
    });

    it('starts with no users when the file is missing, and loads it once it appears', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      const warnings: PasswdFileWarning[] = [];
      let t = 0;
      const backend = await PasswdFileBackend.open({ path, verifier: new CountingVerifier(), watch: false, now: () => t, onWarning: (w) => warnings.push(w) });
      assert.equal(backend.size, 0);
      assert.match(warnings[0]!.message, /file not found/);
      const r = await backend.verifyPassword({ username: 'alice', password: 'alice-pw' });
      assert.equal(!r.ok && r.failure, 'invalid');
      await writeFileAtomic(path, `alice:${alice}\n`);
      t += 1000;
      assert.ok((await backend.verifyPassword({ username: 'alice', password: 'alice-pw' })).ok);
      await backend.close();
    });

    it('keeps the last users when the file disappears, warning once', async () => {
      let t = 0;
      const { backend, path, warnings } = await fixture(`alice:${alice}\n`, { now: () => t });
      await rm(path);
      for (let i = 0; i < 3; i++) {
        t += 1000;
        assert.ok(await backend.lookup('alice'));
      }
      assert.equal(warnings.filter((w) => /disappeared/.test(w.message)).length, 1);
      await backend.close();
    });

    it('warns when others may read the file', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      await writeFile(path, `alice:${alice}\n`, { mode: 0o644 });
      const warnings: PasswdFileWarning[] = [];
      const backend = await PasswdFileBackend.open({ path, verifier: new CountingVerifier(), watch: false, onWarning: (w) => warnings.push(w) });
      assert.match(warnings[0]!.message, /mode 644/);
      await backend.close();
    });
  });

  it('works end to end with its own worker pool', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(path, `alice:${alice}\ncarol:${carol}\n`, { mode: 0o600 });
    const backend = await PasswdFileBackend.open({ path });
    try {
      assert.ok((await backend.verifyPassword({ username: 'alice', password: 'alice-pw' })).ok);
      assert.ok((await backend.verifyPassword({ username: 'carol', password: 'carol-pw' })).ok);
      assert.equal((await backend.verifyPassword({ username: 'carol', password: 'x' })).ok, false);
      assert.equal((await backend.verifyPassword({ username: 'zed', password: 'x' })).ok, false);
    } finally {
      await backend.close();
    }
  });
});

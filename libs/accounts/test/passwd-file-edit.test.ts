import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PasswdFileDocument, readPasswdFileDocument, updatePasswdFile } from '../src/index.js';
import { tempDir } from './helpers.js';

const ORIGINAL = [
  '# managed by hand and by postern',
  'alice:{PLAIN}a:1000:1000:Alice:/home/alice:/bin/sh:nologin quota=1G',
  '',
  'not a valid line',
  'bob@example.com:{SSHA512}xyz',
  'BOB@example.com:{PLAIN}shadowed',
  '',
].join('\n');

describe('PasswdFileDocument', () => {
  it('round-trips a file it does not change', () => {
    assert.equal(PasswdFileDocument.parse(ORIGINAL).toString(), ORIGINAL);
  });

  it('lists users in effect, with their declared scheme', () => {
    const doc = PasswdFileDocument.parse(`${ORIGINAL}carol:$6$salt$hash\ndave:\n`);
    assert.deepEqual(doc.users(), [
      { username: 'alice', scheme: 'PLAIN', line: 2 },
      { username: 'bob@example.com', scheme: 'SSHA512', line: 5 },
      { username: 'carol', scheme: 'CRYPT', line: 7 },
      { username: 'dave', scheme: null, line: 8 },
    ]);
  });

  it('adds at the end and refuses duplicates ignoring case', () => {
    const doc = PasswdFileDocument.parse(ORIGINAL);
    doc.add('carol', '{PLAIN}c');
    assert.equal(doc.toString(), `${ORIGINAL}carol:{PLAIN}c\n`);
    assert.throws(() => doc.add('ALICE', '{PLAIN}x'), { code: 'user-exists' });
    assert.throws(() => doc.add('bad name', '{PLAIN}x'), { code: 'invalid-username' });
    assert.throws(() => doc.add('x:y', '{PLAIN}x'), { code: 'invalid-username' });
    assert.throws(() => doc.add('#x', '{PLAIN}x'), { code: 'invalid-username' });
    assert.throws(() => doc.add('dave', '{PLAIN}a:b'), { code: 'invalid-password' });
  });

  it('changes only the password field of the line in effect', () => {
    const doc = PasswdFileDocument.parse(ORIGINAL);
    doc.setPassword('Alice', '{PLAIN}new');
    assert.equal(doc.toString(), ORIGINAL.replace('alice:{PLAIN}a:', 'alice:{PLAIN}new:'));
    assert.throws(() => doc.setPassword('nobody', '{PLAIN}x'), { code: 'no-such-user' });
  });

  it('keeps CRLF line ends', () => {
    const doc = PasswdFileDocument.parse('alice:{PLAIN}a\r\nbob:{PLAIN}b\r\n');
    doc.setPassword('alice', '{PLAIN}z');
    assert.equal(doc.toString(), 'alice:{PLAIN}z\r\nbob:{PLAIN}b\r\n');
  });

  it('removes every line of a user so no duplicate comes back', () => {
    const doc = PasswdFileDocument.parse(ORIGINAL);
    doc.remove('bob@example.com');
    assert.equal(doc.has('bob@example.com'), false);
    assert.ok(doc.toString().includes('not a valid line'));
    assert.ok(doc.toString().startsWith('# managed'));
    assert.throws(() => doc.remove('bob@example.com'), { code: 'no-such-user' });
  });
});

describe('updatePasswdFile', () => {
  it('creates the directory and a 0600 file, leaving no temporary files', async () => {
    const dir = await tempDir();
    const path = join(dir, 'sub', 'passwd');
    await updatePasswdFile(path, (doc) => doc.add('alice', '{PLAIN}a'));
    assert.equal(await readFile(path, 'utf8'), 'alice:{PLAIN}a\n');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(dir, 'sub')), ['passwd']);
  });

  it('keeps other lines and tightens the mode of an existing file', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(path, ORIGINAL, { mode: 0o644 });
    const before = (await stat(path)).ino;
    await updatePasswdFile(path, (doc) => doc.setPassword('alice', '{PLAIN}b'));
    assert.equal(await readFile(path, 'utf8'), ORIGINAL.replace('{PLAIN}a:', '{PLAIN}b:'));
    const st = await stat(path);
    assert.equal(st.mode & 0o777, 0o600);
    assert.notEqual(st.ino, before, 'replaced by rename, not rewritten in place');
  });

  it('writes nothing when the edit throws', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(path, ORIGINAL, { mode: 0o600 });
    await assert.rejects(updatePasswdFile(path, (doc) => doc.remove('nobody')), { code: 'no-such-user' });
    assert.equal(await readFile(path, 'utf8'), ORIGINAL);
    assert.deepEqual(await readdir(dir), ['passwd']);
  });

  it('serialises concurrent writers on the lock file', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await Promise.all(Array.from({ length: 12 }, (_, i) => updatePasswdFile(path, (doc) => doc.add(`user${i}`, '{PLAIN}x'))));
    const doc = await readPasswdFileDocument(path);
    assert.equal(doc.users().length, 12);
  });

  it('breaks a lock left by a dead process and times out on a live one', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(`${path}.lock`, '999999999\n');
    await updatePasswdFile(path, (doc) => doc.add('alice', '{PLAIN}a'));
    assert.ok((await readPasswdFileDocument(path)).has('alice'));
    await writeFile(`${path}.lock`, `${process.ppid}\n`);
    await assert.rejects(updatePasswdFile(path, (doc) => doc.add('bob', '{PLAIN}b'), { lockTimeoutMs: 200 }), { code: 'lock-timeout' });
  });

  it('reads a missing file as empty', async () => {
    const dir = await tempDir();
    assert.deepEqual((await readPasswdFileDocument(join(dir, 'none'))).users(), []);
  });
});

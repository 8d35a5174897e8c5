import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { expandTemplate, isLoopbackHost } from '../src/cli-util.js';
import { readAccounts } from '../src/generator.js';
import { countLf, generateMail, parseSizeDistribution } from '../src/mailgen.js';

const NAME = /^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([A-Za-z0-9_.-]+),S=(\d+),W=(\d+)(:2,[A-Z]*)?$/;

const scratch = mkdtempSync(join(os.tmpdir(), 'postern-mailgen-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function treeDigest(root: string, users: string[]): string {
  const h = createHash('sha256');
  for (const u of users) {
    for (const sub of ['new', 'cur']) {
      const dir = join(root, u, 'Maildir', sub);
      for (const f of readdirSync(dir).sort()) {
        h.update(`${u}/${sub}/${f}\n`);
        h.update(readFileSync(join(dir, f)));
      }
    }
  }
  return h.digest('hex');
}

describe('generateMail', () => {
  const root = join(scratch, 'a');
  const result = generateMail({ root, users: 3, messages: 12, sizes: '200-2k:3,20k-90k:1', seed: 7 });

  it('writes a Maildir per user with the requested number of messages', () => {
    assert.deepEqual(
      result.users.map((u) => u.user),
      ['user1', 'user2', 'user3'],
    );
    for (const u of result.users) {
      for (const sub of ['cur', 'new', 'tmp']) assert.ok(statSync(join(root, u.user, 'Maildir', sub)).isDirectory());
      assert.equal(readdirSync(join(root, u.user, 'Maildir', 'new')).length, 12);
    }
  });

  it('names files with S= equal to the file size and W= equal to its size with CRLF line ends', () => {
    let dotLines = 0;
    let loneDots = 0;
    for (const u of result.users) {
      const dir = join(root, u.user, 'Maildir', 'new');
      let sumS = 0;
      let sumW = 0;
      for (const f of readdirSync(dir)) {
        const m = NAME.exec(f);
        assert.ok(m, `maildir name: ${f}`);
        const data = readFileSync(join(dir, f));
        assert.equal(Number(m[6]), data.length, `S= of ${f}`);
        assert.ok(!data.includes(0x0d), 'LF line ends only');
        assert.equal(data[data.length - 1], 0x0a, 'ends with a line end');
        const crlf = Buffer.from(data.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
        assert.equal(Number(m[7]), crlf.length, `W= of ${f}`);
        assert.equal(countLf(data), crlf.length - data.length);
        sumS += data.length;
        sumW += crlf.length;
        const text = data.toString('latin1');
        dotLines += (text.match(/\n\./g) ?? []).length;
        loneDots += (text.match(/\n\.\n/g) ?? []).length;
      }
      assert.equal(u.octets, sumS);
      assert.equal(u.crlfOctets, sumW);
    }
    assert.ok(dotLines > 0, 'some lines start with a dot');
    assert.ok(loneDots > 0, 'some lines are a lone dot');
  });

  it('draws sizes from the distribution (headers aside)', () => {
    for (const u of result.users) {
      for (const f of readdirSync(join(root, u.user, 'Maildir', 'new'))) {
        const s = Number(NAME.exec(f)?.[6]);
        assert.ok((s >= 200 && s <= 2048) || (s >= 20 * 1024 && s <= 90 * 1024) || s < 600, `size ${s}`);
      }
    }
  });

  it('writes a passwd-file, an accounts file and a manifest', () => {
    assert.equal(readFileSync(result.passwdFile, 'utf8'), 'user1:{PLAIN}secret\nuser2:{PLAIN}secret\nuser3:{PLAIN}secret\n');
    assert.deepEqual(readAccounts(result.accountsFile), [
      { user: 'user1', password: 'secret' },
      { user: 'user2', password: 'secret' },
      { user: 'user3', password: 'secret' },
    ]);
    assert.deepEqual(readAccounts(result.passwdFile), readAccounts(result.accountsFile));
    const manifest = JSON.parse(readFileSync(result.manifestFile, 'utf8'));
    assert.equal(manifest.totalCrlfOctets, result.totalCrlfOctets);
    assert.ok(!JSON.stringify(manifest).includes('secret'), 'no passwords in the manifest');
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const again = generateMail({ root: join(scratch, 'b'), users: 3, messages: 12, sizes: '200-2k:3,20k-90k:1', seed: 7 });
    const other = generateMail({ root: join(scratch, 'c'), users: 3, messages: 12, sizes: '200-2k:3,20k-90k:1', seed: 8 });
    const users = result.users.map((u) => u.user);
    assert.equal(treeDigest(join(scratch, 'b'), users), treeDigest(root, users));
    assert.notEqual(treeDigest(join(scratch, 'c'), users), treeDigest(root, users));
    assert.equal(again.totalCrlfOctets, result.totalCrlfOctets);
    assert.notEqual(other.totalCrlfOctets, result.totalCrlfOctets);
  });

  it('refuses to overwrite without force, replaces with it', () => {
    assert.throws(() => generateMail({ root, users: 1, messages: 1 }), /exists/);
    const r = generateMail({ root: join(scratch, 'b'), users: 1, messages: 2, force: true, into: 'cur' });
    const files = readdirSync(join(scratch, 'b', 'user1', 'Maildir', 'cur'));
    assert.equal(files.length, 2);
    assert.ok(files.every((f) => f.endsWith(':2,')));
    assert.equal(readdirSync(join(scratch, 'b', 'user1', 'Maildir', 'new')).length, 0);
    assert.equal(r.users[0]?.messages, 2);
  });

  it('hashes a non-PLAIN scheme once with doveadm pw', () => {
    const r = generateMail({ root: join(scratch, 'd'), users: 2, messages: 0, scheme: 'SHA512-CRYPT', password: 'pw' });
    const lines = readFileSync(r.passwdFile, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    const hashes = lines.map((l) => l.slice(l.indexOf(':') + 1));
    assert.match(hashes[0] as string, /^\{SHA512-CRYPT\}\$6\$/);
    assert.equal(hashes[0], hashes[1], 'one hash reused for every user');
    assert.throws(() => readAccounts(r.passwdFile), /SHA512-CRYPT/);
    assert.deepEqual(readAccounts(r.accountsFile)[1], { user: 'user2', password: 'pw' });
  });
});

describe('size specs, templates, hosts', () => {
  it('parses fixed, ranged and weighted specs', () => {
    assert.deepEqual(parseSizeDistribution('4k').ranges, [{ min: 4096, max: 4096, weight: 1 }]);
    assert.deepEqual(parseSizeDistribution('1k-2m').ranges, [{ min: 1024, max: 2 * 1024 * 1024, weight: 1 }]);
    assert.deepEqual(parseSizeDistribution('100:3,1KiB-2KiB:1').ranges, [
      { min: 100, max: 100, weight: 3 },
      { min: 1024, max: 2048, weight: 1 },
    ]);
    for (const bad of ['', 'x', '4k-1k', '1k:0', '1k:-2', '1-2-3']) assert.throws(() => parseSizeDistribution(bad), bad);
  });
  it('expands user templates', () => {
    assert.equal(expandTemplate('user%d', 7), 'user7');
    assert.equal(expandTemplate('u%04d@x', 7), 'u0007@x');
  });
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['10.0.0.1', '192.168.1.1', 'example.com', '127.0.0.256', '0.0.0.0']) assert.ok(!isLoopbackHost(h), h);
  });
  it('reads passwd-file style lines with extra fields', () => {
    const f = join(scratch, 'accounts');
    writeFileSync(f, '# comment\nalice:{PLAIN}a1::::::\n\nbob:b2\n');
    assert.deepEqual(readAccounts(f), [
      { user: 'alice', password: 'a1' },
      { user: 'bob', password: 'b2' },
    ]);
  });
});

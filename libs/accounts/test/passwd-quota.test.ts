// Per-account quota from Dovecot userdb fields in the passwd-file.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PasswdFileBackend, parseQuotaRules, type PasswdFileWarning } from '../src/index.js';
import { CountingVerifier, tempDir } from './helpers.js';

const fields = (entries: Record<string, string>): Map<string, string> => new Map(Object.entries(entries));

describe('quota rules', () => {
  it('reads storage (kilobytes by default), bytes and messages with Dovecot suffixes', () => {
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: '*:storage=100M' })), { quota: { maxOctets: 100 * 1024 * 1024 }, problems: [] });
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: '*:storage=2048' })).quota, { maxOctets: 2 * 1024 * 1024 });
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: '*:bytes=2048' })).quota, { maxOctets: 2048 });
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: '*:storage=1G', quota_rule2: '*:messages=1000' })).quota, {
      maxOctets: 1024 ** 3,
      maxMessages: 1000,
    });
    assert.deepEqual(parseQuotaRules(fields({ userdb_quota_rule: 'INBOX:messages=5:storage=10b' })).quota, { maxOctets: 10, maxMessages: 5 });
    // A later rule for the same limit wins; 0 is "no limit", kept so it overrides a default.
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: '*:storage=1M', quota_rule2: '*:storage=0' })).quota, { maxOctets: 0 });
  });

  it('ignores rules for other mailboxes and unrelated fields', () => {
    assert.deepEqual(parseQuotaRules(fields({ quota_rule: 'Trash:storage=+100M', nologin: '', quota: '1G' })), { quota: undefined, problems: [] });
  });

  it('reports what it cannot use, naming the field', () => {
    const { quota, problems } = parseQuotaRules(fields({ quota_rule: '*:storage=+10M', quota_rule2: '*:messages=many', quota_rule3: 'storage' }));
    assert.equal(quota, undefined);
    assert.equal(problems.length, 3);
    assert.match(problems[0]!, /^quota_rule: storage: "\+10M" is not a size/);
    assert.match(problems[1]!, /^quota_rule2: messages:/);
    assert.match(problems[2]!, /^quota_rule3: expected <mailbox>:<limit>=<value>/);
  });
});

describe('PasswdFileBackend quota', () => {
  it('fills Account.quota from userdb_quota_rule fields; accounts without rules have none', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(
      path,
      [
        'alice:{PLAIN}a::::::userdb_quota_rule=*:storage=100M userdb_quota_rule2=*:messages=1000',
        'bob:{PLAIN}b::::::quota_rule=*:bytes=5000',
        'carol:{PLAIN}c',
        'dave:{PLAIN}d::::::userdb_quota_rule=*:storage=lots',
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const warnings: PasswdFileWarning[] = [];
    const backend = await PasswdFileBackend.open({ path, verifier: new CountingVerifier(), watch: false, onWarning: (w) => warnings.push(w) });
    try {
      assert.deepEqual((await backend.lookup('alice@example.org'))?.quota, { maxOctets: 100 * 1024 * 1024, maxMessages: 1000 });
      assert.deepEqual((await backend.lookup('bob'))?.quota, { maxOctets: 5000 });
      const carol = await backend.lookup('carol');
      assert.ok(carol && !('quota' in carol));
      // A rule that cannot be read is reported and not used; the user still receives mail.
      assert.equal((await backend.lookup('dave'))?.quota, undefined);
      assert.equal(warnings.length, 1, warnings.map((w) => w.message).join('\n'));
      assert.match(warnings[0]!.message, /passwd:4: user dave: userdb_quota_rule: storage: "lots" is not a size/);
      // Logging in gives the same account, quota included.
      const login = await backend.verifyPassword({ username: 'alice', password: 'a' });
      assert.ok(login.ok);
      assert.deepEqual(login.account.quota, { maxOctets: 100 * 1024 * 1024, maxMessages: 1000 });
    } finally {
      await backend.close();
    }
  });
});

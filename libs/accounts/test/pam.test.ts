// PamBackend against real PAM: a system user made by the test (useradd + chpasswd), pamtester,
// and PAM service files written under /etc/pam.d with unique names. Needs root (useradd, and
// pam_unix reads /etc/shadow); without it the tests fail, they do not skip.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { PamBackend, type AuthResult, type PamBackendOptions } from '../src/index.js';

const run = promisify(execFile);
const tag = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
const SERVICE = `postern-test-${tag}`;
const SLOW_SERVICE = `postern-test-slow-${tag}`;
const PASSWORD = `Pam-${randomBytes(6).toString('base64url')}`;
const FLOOR = 400;

let user = `pt${tag}`;
let uid = 0;
const warnings: string[] = [];

function backend(options: PamBackendOptions = {}): PamBackend {
  return new PamBackend({ service: SERVICE, failureDelayMs: FLOOR, userCacheMs: 0, onWarning: (m) => warnings.push(m), ...options });
}

async function timed(call: () => Promise<AuthResult>): Promise<{ result: AuthResult; ms: number }> {
  const start = performance.now();
  const result = await call();
  return { result, ms: performance.now() - start };
}

function failure(result: AuthResult): string {
  assert.equal(result.ok, false, 'expected a failure');
  return result.ok ? '' : result.failure;
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the PAM tests need root: they create a system user with useradd and pam_unix must read /etc/shadow');
  await writeFile(`/etc/pam.d/${SERVICE}`, 'auth required pam_unix.so nodelay\naccount required pam_unix.so\n');
  // A stack that hangs: pam_exec runs sleep before pam_unix is asked.
  await writeFile(`/etc/pam.d/${SLOW_SERVICE}`, 'auth required pam_exec.so quiet /usr/bin/sleep 3\nauth required pam_unix.so nodelay\naccount required pam_unix.so\n');
  await run('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  const chpasswd = run('chpasswd');
  chpasswd.child.stdin!.end(`${user}:${PASSWORD}\n`);
  await chpasswd;
  uid = Number((await run('id', ['-u', user])).stdout.trim());
  assert.ok(uid >= 1000, `useradd gave uid ${uid}`);
});

after(async () => {
  await run('userdel', [user]).catch(() => undefined);
  await rm(`/etc/pam.d/${SERVICE}`, { force: true });
  await rm(`/etc/pam.d/${SLOW_SERVICE}`, { force: true });
});

describe('PamBackend (real PAM, pamtester)', () => {
  it('the right password logs in; the mailbox id is the UID', async () => {
    const r = await backend().verifyPassword({ username: user, password: PASSWORD });
    assert.deepEqual(r, { ok: true, account: { username: user, mailboxId: `pam:${uid}`, backend: 'pam' } });
  });

  it('a login name in capitals finds the lower-case system user', async () => {
    const r = await backend().verifyPassword({ username: user.toUpperCase(), password: PASSWORD });
    assert.equal(r.ok && r.account.username, user);
  });

  it('wrong password and unknown user: the same failure, after the same time', async () => {
    const b = backend();
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      const w = await timed(() => b.verifyPassword({ username: user, password: `${PASSWORD}x` }));
      const u = await timed(() => b.verifyPassword({ username: `nosuch${tag}`, password: PASSWORD }));
      assert.equal(failure(w.result), 'invalid');
      assert.equal(failure(u.result), 'invalid');
      wrong.push(w.ms);
      unknown.push(u.ms);
    }
    for (const ms of [...wrong, ...unknown]) assert.ok(ms >= FLOOR - 1 && ms < FLOOR + 150, `failure took ${Math.round(ms)} ms`);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(Math.abs(mean(wrong) - mean(unknown)) < 50, `wrong ${wrong.map(Math.round)} vs unknown ${unknown.map(Math.round)}`);
  });

  it('UIDs below PAM_MIN_UID never reach PAM: root, and the test user once the minimum is above it', async () => {
    const b = backend({ minUid: uid + 1 });
    const r = await timed(() => b.verifyPassword({ username: user, password: PASSWORD }));
    assert.equal(failure(r.result), 'invalid');
    assert.ok(r.ms >= FLOOR - 1, 'answered after the same delay');
    assert.equal(await b.hasLogin(user), false);
    assert.equal(await b.lookup(`${user}@example.org`), null);
    const root = backend();
    assert.equal(failure(await root.verifyPassword({ username: 'root', password: 'anything' })), 'invalid');
    assert.equal(await root.hasLogin('root'), false);
    assert.equal(await root.hasLogin('0'), false, 'a number is not a user name (getent would read it as a UID)');
    assert.equal(await root.lookup('nobody@example.org'), null, 'nobody (65534) is above the maximum UID');
  });

  it('a locked account (usermod -L) is refused with its right password', async () => {
    await run('usermod', ['-L', user]);
    try {
      assert.equal(failure(await backend().verifyPassword({ username: user, password: PASSWORD })), 'invalid');
    } finally {
      await run('usermod', ['-U', user]);
    }
    assert.equal((await backend().verifyPassword({ username: user, password: PASSWORD })).ok, true);
  });

  it('an expired account (chage -E 0) and a required password change are refused by acct_mgmt', async () => {
    await run('chage', ['-E', '0', user]);
    try {
      const r = await timed(() => backend().verifyPassword({ username: user, password: PASSWORD }));
      assert.equal(failure(r.result), 'refused');
      assert.match(!r.result.ok ? r.result.reason : '', /expired/i);
      assert.ok(r.ms >= FLOOR - 1);
    } finally {
      await run('chage', ['-E', '-1', user]);
    }
    await run('chage', ['-d', '0', user]);
    try {
      const r = await backend().verifyPassword({ username: user, password: PASSWORD });
      assert.equal(failure(r), 'refused');
    } finally {
      await run('chage', ['-d', String(Math.floor(Date.now() / 86_400_000)), user]);
    }
    assert.equal((await backend().verifyPassword({ username: user, password: PASSWORD })).ok, true);
  });

  it('passwords that cannot cross the PAM conversation are invalid, not truncated', async () => {
    const b = backend();
    assert.equal(failure(await b.verifyPassword({ username: user, password: `${PASSWORD}\nmore` })), 'invalid');
    assert.equal(failure(await b.verifyPassword({ username: user, password: `${PASSWORD}${'a'.repeat(600)}` })), 'invalid');
    assert.equal(failure(await b.verifyPassword({ username: user, password: '' })), 'invalid');
  });

  it('recipient lookup and hasLogin; localDomains limits the domains', async () => {
    const b = backend({ localDomains: ['example.org'] });
    assert.deepEqual(await b.lookup(`<${user}@Example.ORG>`), { username: user, mailboxId: `pam:${uid}`, backend: 'pam' });
    assert.equal(await b.lookup(`${user}@elsewhere.net`), null);
    assert.equal((await b.lookup(user))?.mailboxId, `pam:${uid}`);
    assert.equal(await b.hasLogin(user), true);
    assert.equal(await b.hasLogin(`nosuch${tag}`), false);
    assert.equal(b.supportsApop(), false);
  });

  it('a renamed user (usermod -l) keeps the mailbox', async () => {
    const renamed = `pr${tag}`;
    await run('usermod', ['-l', renamed, user]);
    user = renamed;
    const r = await backend().verifyPassword({ username: renamed, password: PASSWORD });
    assert.equal(r.ok && r.account.mailboxId, `pam:${uid}`);
  });

  it('a PAM stack that hangs answers temporary at the deadline, and the pool stays usable', async () => {
    const b = backend({ service: SLOW_SERVICE, timeoutMs: 500, concurrency: 1 });
    const r = await timed(() => b.verifyPassword({ username: user, password: PASSWORD }));
    assert.equal(failure(r.result), 'temporary');
    assert.ok(r.ms >= 490 && r.ms < 2_000, `took ${Math.round(r.ms)} ms`);
    const fast = backend({ concurrency: 1 });
    assert.equal((await fast.verifyPassword({ username: user, password: PASSWORD })).ok, true);
  });

  it('a full queue sheds load as temporary', async () => {
    const b = backend({ service: SLOW_SERVICE, timeoutMs: 400, concurrency: 1, maxQueue: 0 });
    const [first, second] = await Promise.all([
      b.verifyPassword({ username: user, password: PASSWORD }),
      b.verifyPassword({ username: user, password: PASSWORD }),
    ]);
    assert.equal(failure(first), 'temporary');
    assert.equal(failure(second), 'temporary');
    const reasons = [first, second].map((r) => (r.ok ? '' : r.reason)).sort();
    assert.match(reasons.join(' | '), /no answer within 400 ms.* \| .*waiting|waiting.* \| .*no answer within 400 ms/);
  });

  it('a failure slower than the floor is reported once; no password in any warning', async () => {
    const b = backend({ service: SLOW_SERVICE, timeoutMs: 10_000, failureDelayMs: 50 });
    warnings.length = 0;
    assert.equal(failure(await b.verifyPassword({ username: user, password: 'wrong-password' })), 'invalid');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /PAM_FAILURE_DELAY_MS/);
    for (const w of warnings) assert.ok(!w.includes(PASSWORD) && !w.includes('wrong-password'));
  });

  it('the shipped service file parses as a PAM stack pamtester accepts', async () => {
    const text = readFileSync(new URL('../../../infra/pam/postern', import.meta.url), 'utf8');
    const name = `postern-shipped-${tag}`;
    await writeFile(`/etc/pam.d/${name}`, text);
    try {
      assert.equal((await backend({ service: name }).verifyPassword({ username: user, password: PASSWORD })).ok, true);
    } finally {
      await rm(`/etc/pam.d/${name}`, { force: true });
    }
  });
});

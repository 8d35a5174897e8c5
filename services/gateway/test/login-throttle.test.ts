// performLogin and the login throttle, with a scripted account backend and throttle: what is
// asked, in which order, and what the client is told.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccountBackend, AuthResult } from '@postern/accounts';
import { MemoryLockManager, type LoginAttempt, type LoginThrottle, type ThrottleVerdict } from '@postern/locks';
import { MemoryStore } from '@postern/mailstore';
import { performLogin, type LoginContext } from '../src/login.js';

function accounts(answer: AuthResult, calls: string[]): AccountBackend {
  const reply = async (): Promise<AuthResult> => {
    calls.push('verify');
    return answer;
  };
  return { name: 'scripted', verifyPassword: reply, verifyApop: reply, supportsApop: () => false, lookup: async () => null };
}

function throttle(verdict: ThrottleVerdict | Error, calls: string[]): LoginThrottle {
  return {
    async checkLogin(a: LoginAttempt) {
      calls.push(`check ${a.ip} ${a.username}`);
      if (verdict instanceof Error) throw verdict;
      return verdict;
    },
    async recordFailure(a: LoginAttempt) {
      calls.push(`failure ${a.ip} ${a.username}`);
    },
    async recordSuccess(a: LoginAttempt) {
      calls.push(`success ${a.ip} ${a.username}`);
    },
  };
}

const ALICE: AuthResult = { ok: true, account: { username: 'alice', mailboxId: 'alice', backend: 'scripted' } };
const WRONG: AuthResult = { ok: false, failure: 'invalid', reason: 'wrong password' };

function context(backend: AccountBackend, gate: LoginThrottle): LoginContext {
  return {
    accounts: backend,
    locks: new MemoryLockManager(),
    store: new MemoryStore(),
    apopTimestamp: null,
    signal: new AbortController().signal,
    loginDelay: null,
    throttle: { gate, ip: '203.0.113.7' },
  };
}

const login = (ctx: LoginContext, password = 'pw') => performLogin(ctx, { kind: 'password', username: 'Alice', password });

describe('performLogin with a login throttle', () => {
  it('allowed: check, verify, record success (the name as typed, the client address)', async () => {
    const calls: string[] = [];
    const out = await login(context(accounts(ALICE, calls), throttle({ allowed: true, delayMs: 0 }, calls)));
    assert.equal(out.result.ok, true);
    assert.deepEqual(calls, ['check 203.0.113.7 Alice', 'verify', 'success 203.0.113.7 Alice']);
    await out.opened?.lease.release();
  });

  it('a wrong password is recorded as a failure; -ERR [AUTH]', async () => {
    const calls: string[] = [];
    const out = await login(context(accounts(WRONG, calls), throttle({ allowed: true, delayMs: 0 }, calls)));
    assert.deepEqual(out.result, { ok: false, code: 'AUTH' });
    assert.deepEqual(calls, ['check 203.0.113.7 Alice', 'verify', 'failure 203.0.113.7 Alice']);
  });

  it('refused: -ERR [AUTH] after the delay, the backend is never asked, nothing recorded', async () => {
    const calls: string[] = [];
    const start = performance.now();
    const out = await login(
      context(accounts(ALICE, calls), throttle({ allowed: false, delayMs: 150, reason: 'user', retryAfterMs: 60_000 }, calls)),
    );
    assert.ok(performance.now() - start >= 140);
    assert.deepEqual(out.result, { ok: false, code: 'AUTH' });
    assert.equal(out.throttled, 'user');
    assert.match(out.reason, /^throttled \(user\), retry after 60 s$/);
    assert.deepEqual(calls, ['check 203.0.113.7 Alice']);
  });

  it('the throttle failing (Redis down, primary gone): -ERR [SYS/TEMP], the backend is never asked', async () => {
    const calls: string[] = [];
    const out = await login(context(accounts(ALICE, calls), throttle(new Error('connection refused'), calls)));
    assert.deepEqual(out.result, { ok: false, code: 'SYS/TEMP' });
    assert.match(out.reason, /login throttle error: connection refused/);
    assert.deepEqual(calls, ['check 203.0.113.7 Alice']);
  });

  it('a backend fault is not a failure of the user: nothing recorded', async () => {
    const calls: string[] = [];
    const temporary: AuthResult = { ok: false, failure: 'temporary', reason: 'directory down' };
    const out = await login(context(accounts(temporary, calls), throttle({ allowed: true, delayMs: 0 }, calls)));
    assert.deepEqual(out.result, { ok: false, code: 'SYS/TEMP' });
    assert.deepEqual(calls, ['check 203.0.113.7 Alice', 'verify']);
  });
});

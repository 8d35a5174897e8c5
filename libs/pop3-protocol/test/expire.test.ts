/**
 * EXPIRE policy (RFC 2449 section 6.7), decided by the session at QUIT: `EXPIRE 0` removes what
 * was retrieved in the session, `EXPIRE n` what was delivered more than n days before login.
 * Nothing is removed except through the commit of a QUIT from TRANSACTION (invariant 2).
 */
import assert from 'node:assert/strict';
import { describe as group, test } from 'node:test';
import { expiredAtQuit, step, initialState, type Effect, type MessageInfo, type SessionConfig, type SessionInput, type SessionState, type TransactionState } from '../src/index.js';
import { BODIES, MESSAGES, PLAIN_LINK, checkStep, config, runScript, topOf } from './harness.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);

type Input = string | SessionInput;

function feed(state: SessionState, ...inputs: Input[]): { state: SessionState; effects: readonly Effect[] } {
  let result = { state, effects: [] as readonly Effect[] };
  for (const input of inputs) {
    const i: SessionInput = typeof input === 'string' ? { type: 'line', line: input } : input;
    const r = step(result.state, i);
    checkStep(result.state, i, r.state, r.effects);
    result = r;
  }
  return result;
}

function loggedIn(cfg: SessionConfig, messages: readonly MessageInfo[] = MESSAGES, now: number | null = NOW): TransactionState {
  const login: SessionInput = { type: 'login-result', result: { ok: true, messages }, ...(now === null ? {} : { now }) };
  const s = feed(initialState(cfg, PLAIN_LINK), 'USER alice', 'PASS wonderland', login).state;
  assert.equal(s.phase, 'transaction');
  return s as TransactionState;
}

/** What the gateway reports after streaming `send-message` for message `index` whole or as TOP. */
function sent(index: number, bodyLines: number | null = null): SessionInput {
  const body = BODIES[index] as Buffer;
  return { type: 'message-sent', index, octets: (bodyLines === null ? body : topOf(body, bodyLines)).length };
}

function commitOf(effects: readonly Effect[]): { deleted: readonly number[]; expired: readonly number[] } {
  const commit = effects.find((e) => e.type === 'commit');
  assert.ok(commit !== undefined && commit.type === 'commit', `no commit in ${JSON.stringify(effects)}`);
  return { deleted: commit.deleted, expired: commit.expired };
}

group('EXPIRE 0: retrieved messages go at QUIT', () => {
  const cfg = config({ expire: 0 });

  test('RETR and a TOP that covers the whole message count; a partial TOP does not', () => {
    const s = loggedIn(cfg);
    const quit = feed(s, 'RETR 1', sent(0), 'TOP 2 1', sent(1, 1), 'TOP 3 100', sent(2, 100), 'QUIT');
    assert.deepEqual(commitOf(quit.effects), { deleted: [0, 2], expired: [0, 2] });
    const done = feed(quit.state, { type: 'commit-result', ok: true });
    assert.match((done.effects[0] as { text: string }).text, /^\+OK .*\(2 messages left\)/);
  });

  test('a send that did not finish (failed open, dropped stream) is not a retrieval', () => {
    const s = loggedIn(cfg);
    const quit = feed(s, 'RETR 1', 'RETR 2', sent(1), 'QUIT');
    assert.deepEqual(commitOf(quit.effects), { deleted: [1], expired: [1] });
  });

  test('DELE and expiry together list each message once, in order; RSET does not undo a retrieval', () => {
    const s = loggedIn(cfg);
    const quit = feed(s, 'RETR 4', sent(3), 'DELE 2', 'RETR 1', sent(0), 'RSET', 'DELE 3', 'QUIT');
    assert.deepEqual(commitOf(quit.effects), { deleted: [0, 2, 3], expired: [0, 3] });
  });

  test('a dropped or timed-out session commits nothing, however much it retrieved', () => {
    const s = loggedIn(cfg);
    const aborted = feed(s, 'RETR 1', sent(0), 'RETR 2', sent(1), { type: 'abort', code: null, text: 'Disconnected for inactivity.' });
    assert.equal(aborted.state.phase, 'closed');
    assert.ok(!aborted.effects.some((e) => e.type === 'commit'));
  });

  test('a failed commit answers -ERR [SYS/TEMP]', () => {
    const s = loggedIn(cfg);
    const quit = feed(s, 'RETR 1', sent(0), 'QUIT', { type: 'commit-result', ok: false });
    assert.match((quit.effects[0] as { text: string }).text, /^-ERR \[SYS\/TEMP\]/);
  });

  test('QUIT before login removes nothing', () => {
    const r = feed(initialState(cfg, PLAIN_LINK), 'QUIT');
    assert.ok(!r.effects.some((e) => e.type === 'commit'));
  });

  test('a message-sent outside TRANSACTION is ignored', () => {
    const s = initialState(cfg, PLAIN_LINK);
    assert.equal(step(s, sent(0)).state, s);
  });

  test('through the byte-level driver, split at every offset', () => {
    const script = 'USER alice\r\nPASS wonderland\r\nRETR 2\r\nTOP 1 0\r\nQUIT\r\n';
    for (let cut = 0; cut <= script.length; cut++) {
      const run = runScript({ clear: script }, { clear: [cut] }, { config: cfg });
      assert.deepEqual(run.commits, [[1]], `cut at ${cut}`);
    }
  });
});

group('EXPIRE n: messages delivered more than n days before login go at QUIT', () => {
  const messages: MessageInfo[] = [
    { uid: 'old', size: 10, received: NOW - 3 * DAY },
    { uid: 'edge', size: 10, received: NOW - 2 * DAY },
    { uid: 'new', size: 10, received: NOW - 1 * DAY },
    { uid: 'unknown', size: 10 },
    { uid: 'old-deleted', size: 10, received: NOW - 30 * DAY },
  ];

  test('older than n days: removed; exactly n days, newer, or of unknown age: kept', () => {
    const s = loggedIn(config({ expire: 2 }), messages);
    const quit = feed(s, 'DELE 5', 'QUIT');
    assert.deepEqual(commitOf(quit.effects), { deleted: [0, 4], expired: [0] });
  });

  test('retrieval does not matter for n > 0', () => {
    const s = loggedIn(config({ expire: 2 }), messages);
    assert.deepEqual(expiredAtQuit(feed(s, 'RETR 3').state as TransactionState), [0, 4]);
  });

  test('without the login time nothing expires by age', () => {
    const s = loggedIn(config({ expire: 2 }), messages, null);
    assert.deepEqual(commitOf(feed(s, 'QUIT').effects), { deleted: [], expired: [] });
  });

  for (const expire of [null, 'NEVER'] as const) {
    test(`EXPIRE ${expire}: nothing expires`, () => {
      const s = loggedIn(config({ expire }), messages);
      assert.deepEqual(commitOf(feed(s, 'RETR 1', { type: 'message-sent', index: 0, octets: 10 }, 'QUIT').effects), {
        deleted: [],
        expired: [],
      });
    });
  }
});

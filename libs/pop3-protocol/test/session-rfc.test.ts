/**
 * The session against RFC 1939 (POP3), 2449 (CAPA, response codes), 2595 (STLS),
 * 3206 (SYS and AUTH response codes) and 5034 (SASL).
 */
import assert from 'node:assert/strict';
import { describe as group, test } from 'node:test';
import {
  capabilities,
  greeting,
  initialState,
  step,
  type Effect,
  type LoginResult,
  type RespCode,
  type SessionConfig,
  type SessionInput,
  type SessionState,
  type StepResult,
  type TransactionState,
} from '../src/index.js';
import {
  APOP_TIMESTAMP,
  CONFIG,
  MESSAGES,
  PLAIN_LINK,
  STRICT_LINK,
  TLS_LINK,
  apopDigest,
  b64,
  checkStep,
  checkedLines,
  config,
  describe,
} from './harness.js';

type Input = string | SessionInput;

/** Feeds inputs one by one, checking the step contract on each; returns the last step. */
function feed(state: SessionState, ...inputs: Input[]): StepResult {
  let result: StepResult = { state, effects: [] };
  for (const input of inputs) {
    const i: SessionInput = typeof input === 'string' ? { type: 'line', line: input } : input;
    const before = result.state;
    const r = step(before, i);
    checkStep(before, i, r.state, r.effects);
    result = r;
  }
  return result;
}

const LOGIN_OK: SessionInput = { type: 'login-result', result: { ok: true, messages: MESSAGES } };
const loginFailed = (code: RespCode, text?: string): SessionInput => ({
  type: 'login-result',
  result: text === undefined ? { ok: false, code } : { ok: false, code, text },
});
const TOO_LONG: SessionInput = { type: 'line-too-long' };

const auth = (cfg: SessionConfig = CONFIG, link = PLAIN_LINK): SessionState => initialState(cfg, link);
const transaction = (cfg: SessionConfig = CONFIG, messages = MESSAGES): TransactionState => {
  const result: LoginResult = { ok: true, messages };
  const s = feed(auth(cfg), 'USER alice', 'PASS wonderland', { type: 'login-result', result }).state;
  assert.equal(s.phase, 'transaction');
  return s as TransactionState;
};

function replyText(effects: readonly Effect[], at = 0): string {
  const e = effects[at];
  assert.ok(e !== undefined && e.type === 'reply', `effect ${at} is not a reply: ${JSON.stringify(effects)}`);
  return e.text;
}

function multi(effects: readonly Effect[]): { first: string; lines: string[] } {
  assert.equal(effects.length, 1);
  const e = effects[0] as Effect;
  assert.equal(e.type, 'reply-lines');
  if (e.type !== 'reply-lines') throw new Error('unreachable');
  return { first: e.first, lines: checkedLines(e) };
}

// ---------------------------------------------------------------------------------------------
// Every command in every state.

const STATES = {
  authorization: () => auth(),
  'authorization, USER given': () => feed(auth(), 'USER alice').state,
  'authorization, plaintext refused': () => auth(CONFIG, STRICT_LINK),
  'SASL PLAIN in progress': () => feed(auth(), 'AUTH PLAIN').state,
  'SASL LOGIN, username due': () => feed(auth(), 'AUTH LOGIN').state,
  'SASL LOGIN, password due': () => feed(auth(), 'AUTH LOGIN', b64('alice')).state,
  'transaction, message 2 deleted': () => feed(transaction(), 'DELE 2').state,
  'pending-login': () => feed(auth(), 'USER alice', 'PASS wonderland').state,
  'pending-tls': () => feed(auth(), 'STLS').state,
  update: () => feed(transaction(), 'DELE 2', 'QUIT').state,
  closed: () => feed(auth(), 'QUIT').state,
} satisfies Record<string, () => SessionState>;

type Column = keyof typeof STATES;
const ACTIVE: readonly Column[] = [
  'authorization',
  'authorization, USER given',
  'authorization, plaintext refused',
  'SASL PLAIN in progress',
  'SASL LOGIN, username due',
  'SASL LOGIN, password due',
  'transaction, message 2 deleted',
];
const WAITING: readonly Column[] = ['pending-login', 'pending-tls', 'update', 'closed'];

const E = ['-ERR'];
const A = ['-ERR [AUTH]'];
const OK = ['+OK'];
const CONT = ['+ '];
const M = ['multi'];
const BYE = ['+OK', 'close'];
const TLS = ['+OK', 'start-tls'];
const LL = ['login LOGIN'];

/**
 * Expected effects per command, one entry per ACTIVE column, in order. In a SASL exchange every
 * line is a response (RFC 5034 section 4): a four-letter keyword is valid base64, so it becomes
 * the LOGIN user name or password; anything else is malformed.
 */
const APOP_LINE = `APOP alice ${apopDigest('wonderland')}`;
const TABLE: readonly (readonly [string, readonly (readonly string[])[]])[] = [
  //                 auth            +USER           no plaintext    PLAIN  LOGIN user  LOGIN pass  transaction
  ['USER alice', [OK, OK, A, E, E, E, E]],
  ['PASS wonderland', [E, ['login USER'], E, E, E, E, E]],
  [APOP_LINE, [['login APOP'], ['login APOP'], ['login APOP'], E, E, E, E]],
  ['AUTH', [M, M, M, E, CONT, LL, E]],
  ['AUTH PLAIN', [CONT, CONT, A, E, E, E, E]],
  ['AUTH LOGIN', [CONT, CONT, A, E, E, E, E]],
  ['AUTH CRAM-MD5', [E, E, E, E, E, E, E]],
  ['STLS', [TLS, TLS, TLS, E, CONT, LL, E]],
  ['CAPA', [M, M, M, E, CONT, LL, M]],
  ['STAT', [E, E, E, E, CONT, LL, OK]],
  ['LIST', [E, E, E, E, CONT, LL, M]],
  ['LIST 1', [E, E, E, E, E, E, OK]],
  ['LIST 2', [E, E, E, E, E, E, E]],
  ['UIDL', [E, E, E, E, CONT, LL, M]],
  ['UIDL 1', [E, E, E, E, E, E, OK]],
  ['RETR 1', [E, E, E, E, E, E, ['send 0 null']]],
  ['RETR 2', [E, E, E, E, E, E, E]],
  ['TOP 1 0', [E, E, E, E, E, E, ['send 0 0']]],
  ['DELE 1', [E, E, E, E, E, E, OK]],
  ['DELE 2', [E, E, E, E, E, E, E]],
  ['NOOP', [E, E, E, E, CONT, LL, OK]],
  ['RSET', [E, E, E, E, CONT, LL, OK]],
  ['QUIT', [BYE, BYE, BYE, E, CONT, LL, ['commit [1]']]],
  ['XYZZY', [E, E, E, E, E, E, E]],
  ['', [E, E, E, E, E, E, E]],
  ['*', [E, E, E, E, E, E, E]],
  [b64('\0alice\0wonderland'), [E, E, E, ['login PLAIN'], CONT, LL, E]],
];

group('every command in every state', () => {
  for (const [line, expected] of TABLE) {
    test(JSON.stringify(line), () => {
      assert.equal(expected.length, ACTIVE.length);
      ACTIVE.forEach((column, i) => {
        const { effects } = feed(STATES[column](), line);
        assert.deepEqual(describe(effects), expected[i], `${column}: ${JSON.stringify(line)}`);
      });
      for (const column of WAITING) {
        const before = STATES[column]();
        const r = step(before, { type: 'line', line });
        assert.deepEqual(r.effects, [], `${column} ignores lines`);
        assert.equal(r.state, before, `${column} keeps its state`);
      }
    });
  }

  test('a line too long, in every state', () => {
    for (const column of ACTIVE) assert.deepEqual(describe(feed(STATES[column](), TOO_LONG).effects), E, column);
    for (const column of WAITING) {
      const before = STATES[column]();
      const r = step(before, TOO_LONG);
      assert.deepEqual(r.effects, [], column);
      assert.equal(r.state, before, column);
    }
  });

  test('results and events, in every state', () => {
    const all = [...ACTIVE, ...WAITING];
    const cases: readonly [string, SessionInput, Partial<Record<Column, readonly string[]>>][] = [
      ['login ok', LOGIN_OK, { 'pending-login': OK }],
      ['login failed', loginFailed('AUTH'), { 'pending-login': A }],
      ['commit ok', { type: 'commit-result', ok: true }, { update: BYE }],
      ['commit failed', { type: 'commit-result', ok: false }, { update: ['-ERR [SYS/TEMP]', 'close'] }],
      ['tls started', { type: 'tls-started', link: TLS_LINK }, {}],
    ];
    for (const [name, input, expected] of cases) {
      for (const column of all) {
        const before = STATES[column]();
        const r = step(before, input);
        checkStep(before, input, r.state, r.effects);
        assert.deepEqual(describe(r.effects), expected[column] ?? [], `${name} in ${column}`);
        if (expected[column] === undefined && input.type !== 'tls-started') assert.equal(r.state, before, `${name} in ${column}`);
      }
    }
    for (const column of all) {
      const r = step(STATES[column](), { type: 'abort', code: 'SYS/TEMP', text: 'Server shutting down.' });
      assert.deepEqual(describe(r.effects), column === 'closed' ? [] : ['-ERR [SYS/TEMP]', 'close'], column);
      assert.equal(r.state.phase, 'closed');
    }
  });
});

// ---------------------------------------------------------------------------------------------

group('greeting (RFC 1939 section 4, 7)', () => {
  test('carries the APOP timestamp only when APOP is offered', () => {
    assert.equal(replyText([greeting(CONFIG)]), `+OK Postern ready. ${APOP_TIMESTAMP}\r\n`);
    assert.equal(replyText([greeting(config({ apopTimestamp: null }))]), '+OK Postern ready.\r\n');
    assert.equal(replyText([greeting(config({ apopTimestamp: null, implementation: null }))]), '+OK POP3 ready.\r\n');
  });
});

group('message numbers (RFC 1939 section 5; digits only, 1..n, never renumbered)', () => {
  // Four messages; message 2 is deleted.
  const t = (): SessionState => feed(transaction(), 'DELE 2').state;
  const NO_SUCH = '-ERR No such message.\r\n';
  const cases: readonly [string, string | number][] = [
    ['1', 0],
    ['01', 0], // leading zeros are digits
    ['0004', 3],
    ['4', 3],
    ['0', NO_SUCH], // never message 1
    ['00', NO_SUCH],
    ['5', NO_SUCH],
    ['1x', NO_SUCH],
    ['x1', NO_SUCH],
    ['+1', NO_SUCH],
    ['-1', NO_SUCH],
    ['1.0', NO_SUCH],
    ['1e0', NO_SUCH],
    ['0x1', NO_SUCH],
    ['\u0661', NO_SUCH], // ARABIC-INDIC DIGIT ONE
    ['\uff11', NO_SUCH], // FULLWIDTH DIGIT ONE
    ['4294967297', NO_SUCH], // 2^32 + 1 must not wrap to 1
    ['9007199254740993', NO_SUCH],
    ['99999999999999999999', NO_SUCH],
    ['1'.repeat(40), NO_SUCH],
    ['2', '-ERR Message 2 already deleted.\r\n'],
  ];
  for (const [arg, expected] of cases) {
    test(`${JSON.stringify(arg)} -> ${typeof expected === 'number' ? `message ${expected + 1}` : expected.trim()}`, () => {
      const retr = feed(t(), `RETR ${arg}`).effects;
      const top = feed(t(), `TOP ${arg} 3`).effects;
      const list = feed(t(), `LIST ${arg}`).effects;
      const uidl = feed(t(), `UIDL ${arg}`).effects;
      const dele = feed(t(), `DELE ${arg}`);
      if (typeof expected === 'number') {
        assert.deepEqual(retr, [{ type: 'send-message', index: expected, bodyLines: null }]);
        assert.deepEqual(top, [{ type: 'send-message', index: expected, bodyLines: 3 }]);
        assert.equal(replyText(list), `+OK ${expected + 1} ${MESSAGES[expected]!.size}\r\n`);
        assert.equal(replyText(uidl), `+OK ${expected + 1} ${MESSAGES[expected]!.uid}\r\n`);
        assert.equal(replyText(dele.effects), `+OK Message ${expected + 1} deleted.\r\n`);
      } else {
        for (const effects of [retr, top, list, uidl, dele.effects]) assert.deepEqual(effects, [{ type: 'reply', text: expected }]);
        // A wrong number is an answer, not a bad command.
        assert.equal(dele.state.badCommands, 0);
      }
    });
  }

  test('extra arguments are a syntax error, not trailing noise accepted', () => {
    for (const line of ['RETR 1 2', 'DELE 1 1', 'LIST 1 1', 'TOP 1', 'TOP 1 2 3', 'RETR']) {
      const r = feed(transaction(), line);
      assert.match(replyText(r.effects), /^-ERR Syntax error in [A-Z]+\.\r\n$/, line);
      assert.equal(r.state.badCommands, 1, line);
    }
  });

  test('STAT, LIST and UIDL skip deleted messages without renumbering', () => {
    const s = feed(transaction(), 'DELE 2', 'DELE 4').state;
    const [m1, , m3] = MESSAGES as [typeof MESSAGES[0], typeof MESSAGES[0], typeof MESSAGES[0]];
    assert.equal(replyText(feed(s, 'STAT').effects), `+OK 2 ${m1.size + m3.size}\r\n`);
    const list = multi(feed(s, 'LIST').effects);
    assert.equal(list.first, `+OK 2 messages (${m1.size + m3.size} octets)`);
    assert.deepEqual(list.lines, [`1 ${m1.size}`, `3 ${m3.size}`]);
    const uidl = multi(feed(s, 'UIDL').effects);
    assert.equal(uidl.first, '+OK Unique-ID listing follows');
    assert.deepEqual(uidl.lines, [`1 ${m1.uid}`, `3 ${m3.uid}`]);
    assert.equal(replyText(feed(s, 'LIST 3').effects), `+OK 3 ${m3.size}\r\n`);
    assert.deepEqual(feed(s, 'RETR 3').effects, [{ type: 'send-message', index: 2, bodyLines: null }]);
  });

  test('an empty maildrop', () => {
    const s = transaction(CONFIG, []);
    assert.equal(replyText(feed(s, 'STAT').effects), '+OK 0 0\r\n');
    assert.deepEqual(multi(feed(s, 'LIST').effects).lines, []);
    assert.equal(replyText(feed(s, 'RETR 1').effects), '-ERR No such message.\r\n');
    assert.deepEqual(describe(feed(s, 'QUIT').effects), ['commit []']);
  });

  test('a LIST reply reflects the maildrop when it was asked, even if read after a later DELE', () => {
    const s = transaction();
    const list = feed(s, 'LIST');
    const uidl = feed(list.state, 'UIDL');
    feed(uidl.state, 'DELE 1', 'DELE 3');
    const all = MESSAGES.map((m, i) => `${i + 1} ${m.size}`);
    assert.deepEqual(multi(list.effects).lines, all);
    assert.deepEqual(multi(uidl.effects).lines, MESSAGES.map((m, i) => `${i + 1} ${m.uid}`));
  });
});

group('TOP (RFC 1939 section 7)', () => {
  const cases: readonly [string, number][] = [
    ['TOP 1 0', 0],
    ['TOP 1 1', 1],
    ['TOP 3 007', 7],
    ['TOP 1 99999999', 99999999],
  ];
  for (const [line, bodyLines] of cases) {
    test(`${line} -> bodyLines ${bodyLines}`, () => {
      const index = Number(line.split(' ')[1]) - 1;
      assert.deepEqual(feed(transaction(), line).effects, [{ type: 'send-message', index, bodyLines }]);
    });
  }
  test('RETR is the whole message: bodyLines null, never a sentinel number', () => {
    assert.deepEqual(feed(transaction(), 'RETR 1').effects, [{ type: 'send-message', index: 0, bodyLines: null }]);
  });
  for (const count of ['-1', '+1', 'x', '1x', '1.5', '']) {
    test(`bad line count ${JSON.stringify(count)} is a syntax error`, () => {
      const r = feed(transaction(), `TOP 1 ${count}`);
      assert.equal(r.effects.length, 1);
      assert.match(replyText(r.effects), /^-ERR /);
      assert.equal(r.state.phase, 'transaction');
    });
  }
  test('TOP of a deleted or missing message', () => {
    assert.equal(replyText(feed(transaction(), 'DELE 1', 'TOP 1 0').effects), '-ERR Message 1 already deleted.\r\n');
    assert.equal(replyText(feed(transaction(), 'TOP 9 0').effects), '-ERR No such message.\r\n');
  });
});

group('DELE, RSET, QUIT and the UPDATE state (RFC 1939 section 5, 6)', () => {
  test('DELE marks, a second DELE of the same message fails, STAT follows', () => {
    const s = transaction();
    const total = MESSAGES.reduce((a, m) => a + m.size, 0);
    const d = feed(s, 'DELE 3');
    assert.equal(replyText(d.effects), '+OK Message 3 deleted.\r\n');
    assert.equal(replyText(feed(d.state, 'STAT').effects), `+OK 3 ${total - MESSAGES[2]!.size}\r\n`);
    assert.equal(replyText(feed(d.state, 'DELE 3').effects), '-ERR Message 3 already deleted.\r\n');
    assert.equal(replyText(feed(d.state, 'RETR 3').effects), '-ERR Message 3 already deleted.\r\n');
  });

  test('RSET undeletes everything', () => {
    const total = MESSAGES.reduce((a, m) => a + m.size, 0);
    const r = feed(transaction(), 'DELE 1', 'DELE 4', 'RSET');
    assert.equal(replyText(r.effects), `+OK Maildrop has 4 messages (${total} octets).\r\n`);
    assert.equal(replyText(feed(r.state, 'STAT').effects), `+OK 4 ${total}\r\n`);
    assert.equal(multi(feed(r.state, 'LIST').effects).lines.length, 4);
    assert.deepEqual(feed(r.state, 'RETR 1').effects, [{ type: 'send-message', index: 0, bodyLines: null }]);
    assert.deepEqual(describe(feed(r.state, 'QUIT').effects), ['commit []']);
  });

  test('QUIT commits exactly the deleted indexes and answers only after the commit is durable', () => {
    const q = feed(transaction(), 'DELE 4', 'DELE 2', 'QUIT');
    assert.deepEqual(q.effects, [{ type: 'commit', deleted: [1, 3], expired: [] }]);
    assert.equal(q.state.phase, 'update');
    // Anything the client sends now waits.
    assert.deepEqual(feed(q.state, 'NOOP').effects, []);
    const done = feed(q.state, { type: 'commit-result', ok: true });
    assert.deepEqual(done.effects, [{ type: 'reply', text: '+OK Postern signing off (2 messages left).\r\n' }, { type: 'close' }]);
    assert.equal(done.state.phase, 'closed');
  });

  test('a failed commit answers -ERR [SYS/TEMP] (RFC 3206) and closes', () => {
    const q = feed(transaction(), 'DELE 1', 'QUIT');
    const done = feed(q.state, { type: 'commit-result', ok: false });
    assert.match(replyText(done.effects), /^-ERR \[SYS\/TEMP\] /);
    assert.deepEqual(done.effects[1], { type: 'close' });
    assert.equal(done.state.phase, 'closed');
  });

  test('QUIT before login closes without a commit', () => {
    const r = feed(auth(), 'USER alice', 'QUIT');
    assert.deepEqual(r.effects, [{ type: 'reply', text: '+OK Postern signing off.\r\n' }, { type: 'close' }]);
  });

  test('an abort in the transaction state deletes nothing', () => {
    const r = feed(transaction(), 'DELE 1', { type: 'abort', code: null, text: 'Idle for too long.' });
    assert.deepEqual(r.effects, [{ type: 'reply', text: '-ERR Idle for too long.\r\n' }, { type: 'close' }]);
    assert.equal(r.state.phase, 'closed');
    assert.deepEqual(feed(r.state, { type: 'commit-result', ok: true }).effects, []);
    assert.deepEqual(feed(r.state, { type: 'abort', code: null, text: 'again' }).effects, []);
  });

  test('NOOP answers +OK in the transaction state only', () => {
    assert.equal(replyText(feed(transaction(), 'NOOP').effects), '+OK\r\n');
    assert.match(replyText(feed(auth(), 'NOOP').effects), /^-ERR /);
  });
});

group('CAPA (RFC 2449, 2595, 3206, 5034)', () => {
  const BASE = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
  const capa = (s: SessionState) => {
    const m = multi(feed(s, 'CAPA').effects);
    assert.equal(m.first, '+OK Capability list follows');
    assert.deepEqual(m.lines, capabilities(s));
    return m.lines;
  };

  test('before login on a clear link where plaintext is allowed', () => {
    assert.deepEqual(capa(auth()), [...BASE, 'USER', 'SASL PLAIN LOGIN', 'STLS', 'IMPLEMENTATION Postern']);
  });
  test('plaintext refused: no USER, no SASL PLAIN/LOGIN, STLS offered', () => {
    assert.deepEqual(capa(auth(CONFIG, STRICT_LINK)), [...BASE, 'STLS', 'IMPLEMENTATION Postern']);
  });
  test('over TLS: no STLS', () => {
    assert.deepEqual(capa(auth(CONFIG, TLS_LINK)), [...BASE, 'USER', 'SASL PLAIN LOGIN', 'IMPLEMENTATION Postern']);
  });
  test('no certificate: no STLS', () => {
    assert.deepEqual(capa(auth(config({ tlsAvailable: false }))), [...BASE, 'USER', 'SASL PLAIN LOGIN', 'IMPLEMENTATION Postern']);
  });
  test('after login: no USER, SASL or STLS', () => {
    assert.deepEqual(capa(transaction()), [...BASE, 'IMPLEMENTATION Postern']);
  });
  test('with USER given the list is unchanged and USER stays given', () => {
    const s = feed(auth(), 'USER alice').state;
    capa(s);
    assert.deepEqual(describe(feed(feed(s, 'CAPA').state, 'PASS wonderland').effects), ['login USER']);
  });
  test('LOGIN-DELAY and EXPIRE only when configured; IMPLEMENTATION only when named', () => {
    const cfg = config({ loginDelay: 900, expire: 30, implementation: null });
    assert.deepEqual(capa(auth(cfg)), [...BASE, 'USER', 'SASL PLAIN LOGIN', 'STLS', 'LOGIN-DELAY 900', 'EXPIRE 30']);
    assert.deepEqual(capa(transaction(cfg)), [...BASE, 'LOGIN-DELAY 900', 'EXPIRE 30']);
    assert.deepEqual(capa(auth(config({ expire: 'NEVER', loginDelay: 0 }))).slice(-3), ['LOGIN-DELAY 0', 'EXPIRE NEVER', 'IMPLEMENTATION Postern']);
  });
  test('SASL lists only configured mechanisms, and disappears when none are', () => {
    assert.ok(capa(auth(config({ saslMechanisms: ['PLAIN'] }))).includes('SASL PLAIN'));
    assert.ok(!capa(auth(config({ saslMechanisms: [] }))).some((c) => c.startsWith('SASL')));
  });
  test('after STLS the list is recomputed for the secure link', () => {
    const s = feed(auth(CONFIG, STRICT_LINK), 'STLS', { type: 'tls-started', link: TLS_LINK }).state;
    assert.deepEqual(capa(s), [...BASE, 'USER', 'SASL PLAIN LOGIN', 'IMPLEMENTATION Postern']);
  });
});

group('USER and PASS (RFC 1939 section 7)', () => {
  test('USER then PASS asks for a login; the password is the rest of the line', () => {
    const r = feed(auth(), 'user bob', 'PASS pass word');
    assert.deepEqual(r.effects, [
      { type: 'login', mechanism: 'USER', credentials: { kind: 'password', username: 'bob', password: 'pass word' } },
    ]);
    assert.equal(r.state.phase, 'pending-login');
  });
  test('PASS without USER', () => {
    assert.equal(replyText(feed(auth(), 'PASS wonderland').effects), '-ERR No username given, use USER first.\r\n');
  });
  test('refused with [AUTH] when plaintext is not allowed, and nothing is remembered', () => {
    const r = feed(auth(CONFIG, STRICT_LINK), 'USER alice');
    assert.equal(replyText(r.effects), '-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n');
    assert.deepEqual(describe(feed(r.state, 'PASS wonderland').effects), ['-ERR']);
  });
  test('a failed login forgets the user name', () => {
    const r = feed(auth(), 'USER alice', 'PASS nope', loginFailed('AUTH'));
    assert.deepEqual(describe(feed(r.state, 'PASS wonderland').effects), ['-ERR']);
  });
});

group('APOP (RFC 1939 section 7)', () => {
  test('offered only with a banner timestamp', () => {
    const r = feed(auth(config({ apopTimestamp: null })), APOP_LINE);
    assert.equal(replyText(r.effects), '-ERR APOP not available.\r\n');
  });
  test('the digest is passed on lower-case, and APOP is allowed where plaintext is not', () => {
    const digest = apopDigest('wonderland');
    const r = feed(auth(CONFIG, STRICT_LINK), `APOP alice ${digest.toUpperCase()}`);
    assert.deepEqual(r.effects, [{ type: 'login', mechanism: 'APOP', credentials: { kind: 'apop', username: 'alice', digest } }]);
  });
  for (const digest of ['abc', 'g'.repeat(32), 'a'.repeat(31), 'a'.repeat(33)]) {
    test(`malformed digest ${digest.slice(0, 8)}... (${digest.length}) gets no login`, () => {
      assert.deepEqual(describe(feed(auth(), `APOP alice ${digest}`).effects), ['-ERR']);
    });
  }
});

group('AUTH (RFC 5034)', () => {
  const creds = (username: string, password: string) => ({ kind: 'password', username, password });

  test('PLAIN with an initial response', () => {
    const r = feed(auth(), `AUTH PLAIN ${b64('\0alice\0wonderland')}`);
    assert.deepEqual(r.effects, [{ type: 'login', mechanism: 'PLAIN', credentials: creds('alice', 'wonderland') }]);
  });
  test('PLAIN with authzid equal to authcid', () => {
    const r = feed(auth(), `AUTH PLAIN ${b64('alice\0alice\0wonderland')}`);
    assert.deepEqual(describe(r.effects), ['login PLAIN']);
  });
  test('PLAIN with a continuation: "+ " then the response', () => {
    const c = feed(auth(), 'auth plain');
    assert.deepEqual(c.effects, [{ type: 'reply', text: '+ \r\n' }]);
    const r = feed(c.state, b64('\0alice\0wonderland'));
    assert.deepEqual(r.effects, [{ type: 'login', mechanism: 'PLAIN', credentials: creds('alice', 'wonderland') }]);
  });
  test('PLAIN with "=" (the empty response) is malformed and logs nobody in', () => {
    for (const s of [feed(auth(), 'AUTH PLAIN =').effects, feed(auth(), 'AUTH PLAIN', '=').effects]) {
      assert.equal(replyText(s), '-ERR Malformed PLAIN response.\r\n');
    }
  });
  test('"*" cancels (RFC 5034 section 4): -ERR, not a failed login, exchange over', () => {
    const r = feed(auth(), 'AUTH PLAIN', '*');
    assert.equal(replyText(r.effects), '-ERR Authentication cancelled.\r\n');
    assert.equal(r.state.phase, 'authorization');
    if (r.state.phase !== 'authorization') return;
    assert.equal(r.state.sasl, null);
    assert.equal(r.state.authFailures, 0);
    assert.deepEqual(describe(feed(r.state, 'CAPA').effects), ['multi']);
    const l = feed(auth(), 'AUTH LOGIN', b64('alice'), '*');
    assert.equal(replyText(l.effects), '-ERR Authentication cancelled.\r\n');
  });
  for (const bad of ['abc', 'ab!=', 'YWxp ZQ==', 'YQ', 'Y===', '====', '=a==']) {
    test(`bad base64 ${JSON.stringify(bad)} ends the exchange`, () => {
      const r = feed(auth(), 'AUTH PLAIN', bad);
      assert.equal(replyText(r.effects), '-ERR Invalid base64 data.\r\n');
      assert.equal(r.state.phase === 'authorization' && r.state.sasl, null);
      assert.equal(r.state.badCommands, 1);
    });
  }
  test('bad base64 as initial response', () => {
    assert.equal(replyText(feed(auth(), 'AUTH PLAIN !!!!').effects), '-ERR Invalid base64 data.\r\n');
  });
  for (const [name, raw] of [
    ['no NUL', 'alicewonderland'],
    ['one NUL', 'alice\0wonderland'],
    ['three NULs', '\0alice\0wonder\0land'],
  ] as const) {
    test(`PLAIN message with ${name} is malformed`, () => {
      assert.equal(replyText(feed(auth(), `AUTH PLAIN ${b64(raw)}`).effects), '-ERR Malformed PLAIN response.\r\n');
    });
  }
  test('PLAIN with an authzid other than the authcid fails with [AUTH] and no login', () => {
    const r = feed(auth(), `AUTH PLAIN ${b64('root\0alice\0wonderland')}`);
    assert.deepEqual(r.effects, [{ type: 'reply', text: '-ERR [AUTH] Authentication failed.\r\n' }]);
    assert.equal(r.state.phase, 'authorization');
    if (r.state.phase === 'authorization') assert.equal(r.state.authFailures, 1);
  });
  test('LOGIN: "Username:" and "Password:" prompts, then a login', () => {
    const u = feed(auth(), 'AUTH LOGIN');
    assert.deepEqual(u.effects, [{ type: 'reply', text: '+ VXNlcm5hbWU6\r\n' }]);
    const p = feed(u.state, b64('alice'));
    assert.deepEqual(p.effects, [{ type: 'reply', text: '+ UGFzc3dvcmQ6\r\n' }]);
    const l = feed(p.state, b64('wonderland'));
    assert.deepEqual(l.effects, [{ type: 'login', mechanism: 'LOGIN', credentials: creds('alice', 'wonderland') }]);
  });
  test('LOGIN with the user name as initial response', () => {
    const p = feed(auth(), `AUTH LOGIN ${b64('bob')}`);
    assert.deepEqual(p.effects, [{ type: 'reply', text: '+ UGFzc3dvcmQ6\r\n' }]);
    assert.deepEqual(feed(p.state, b64('pass word')).effects[0], {
      type: 'login',
      mechanism: 'LOGIN',
      credentials: creds('bob', 'pass word'),
    });
  });
  test('refused with [AUTH] when plaintext is not allowed, with or without initial response', () => {
    for (const line of ['AUTH PLAIN', `AUTH PLAIN ${b64('\0alice\0wonderland')}`, 'AUTH LOGIN', `AUTH LOGIN ${b64('alice')}`]) {
      const r = feed(auth(CONFIG, STRICT_LINK), line);
      assert.deepEqual(describe(r.effects), A, line);
      assert.equal(r.state.phase === 'authorization' && r.state.sasl, null, line);
    }
  });
  test('an unconfigured or unknown mechanism is not supported', () => {
    assert.equal(replyText(feed(auth(config({ saslMechanisms: ['PLAIN'] })), 'AUTH LOGIN').effects), '-ERR Unsupported authentication mechanism.\r\n');
    assert.equal(replyText(feed(auth(), 'AUTH GSSAPI').effects), '-ERR Unsupported authentication mechanism.\r\n');
  });
  test('AUTH without a mechanism lists the usable ones', () => {
    assert.deepEqual(multi(feed(auth(), 'AUTH').effects).lines, ['PLAIN', 'LOGIN']);
    assert.deepEqual(multi(feed(auth(CONFIG, STRICT_LINK), 'AUTH').effects).lines, []);
  });
  test('AUTH forgets a USER given before it', () => {
    const r = feed(auth(), 'USER alice', 'AUTH PLAIN', '*', 'PASS wonderland');
    assert.deepEqual(describe(r.effects), ['-ERR']);
  });
  test('a too-long line during the exchange ends it', () => {
    const r = feed(auth(), 'AUTH LOGIN', TOO_LONG);
    assert.equal(replyText(r.effects), '-ERR Authentication line too long.\r\n');
    assert.equal(r.state.phase === 'authorization' && r.state.sasl, null);
  });
});

group('STLS (RFC 2595)', () => {
  test('+OK first, then the start-tls effect', () => {
    const r = feed(auth(), 'STLS');
    assert.deepEqual(r.effects, [{ type: 'reply', text: '+OK Begin TLS negotiation now.\r\n' }, { type: 'start-tls' }]);
    assert.equal(r.state.phase, 'pending-tls');
  });
  test('tls-started forgets the USER given in clear (section 4)', () => {
    const s = feed(auth(), 'USER alice', 'STLS', { type: 'tls-started', link: TLS_LINK }).state;
    assert.equal(s.phase, 'authorization');
    if (s.phase === 'authorization') {
      assert.equal(s.user, null);
      assert.deepEqual(s.link, TLS_LINK);
    }
    assert.deepEqual(describe(feed(s, 'PASS wonderland').effects), ['-ERR']);
  });
  test('not twice, not without a certificate, not after login', () => {
    const secure = feed(auth(), 'STLS', { type: 'tls-started', link: TLS_LINK }).state;
    assert.equal(replyText(feed(secure, 'STLS').effects), '-ERR TLS is already active.\r\n');
    assert.equal(replyText(feed(auth(config({ tlsAvailable: false })), 'STLS').effects), '-ERR STLS not available.\r\n');
    assert.equal(replyText(feed(transaction(), 'STLS').effects), '-ERR STLS is only allowed before login.\r\n');
  });
  test('after TLS, plaintext login works where it was refused before', () => {
    const s = feed(auth(CONFIG, STRICT_LINK), 'STLS', { type: 'tls-started', link: TLS_LINK }).state;
    assert.deepEqual(describe(feed(s, 'USER alice', 'PASS wonderland').effects), ['login USER']);
  });
  test('tls-started outside STLS does not revive a closed or logged-in session', () => {
    const closed = feed(auth(), 'QUIT').state;
    assert.equal(step(closed, { type: 'tls-started', link: TLS_LINK }).state, closed);
    const t = transaction();
    assert.equal(step(t, { type: 'tls-started', link: TLS_LINK }).state, t);
  });
});

group('login results (RFC 2449 section 8, RFC 3206)', () => {
  const cases: readonly [RespCode, string][] = [
    ['AUTH', '-ERR [AUTH] Authentication failed.\r\n'],
    ['IN-USE', '-ERR [IN-USE] Mailbox is locked by another session.\r\n'],
    ['SYS/TEMP', '-ERR [SYS/TEMP] Temporary server failure, try again later.\r\n'],
    ['SYS/PERM', '-ERR [SYS/PERM] Mailbox unavailable.\r\n'],
    ['LOGIN-DELAY', '-ERR [LOGIN-DELAY] Minimum time between logins not yet reached.\r\n'],
  ];
  for (const [code, text] of cases) {
    test(`${code} failure`, () => {
      const r = feed(auth(), 'USER alice', 'PASS wonderland', loginFailed(code));
      assert.deepEqual(r.effects, [{ type: 'reply', text }]);
      assert.equal(r.state.phase, 'authorization');
      if (r.state.phase === 'authorization') assert.equal(r.state.authFailures, code === 'AUTH' ? 1 : 0);
    });
  }
  test('custom text keeps the code', () => {
    const r = feed(auth(), APOP_LINE, loginFailed('IN-USE', 'Busy.'));
    assert.equal(replyText(r.effects), '-ERR [IN-USE] Busy.\r\n');
  });
  test('success reports count and octets', () => {
    const octets = MESSAGES.reduce((a, m) => a + m.size, 0);
    const r = feed(auth(), 'USER alice', 'PASS wonderland', LOGIN_OK);
    assert.equal(replyText(r.effects), `+OK Logged in, 4 messages (${octets} octets).\r\n`);
    assert.equal(r.state.phase, 'transaction');
  });
});

group('limits', () => {
  test('maxAuthFailures: the last allowed failure closes the connection', () => {
    let s: SessionState = auth(config({ maxAuthFailures: 3 }));
    for (let i = 1; i <= 3; i++) {
      const r = feed(s, 'USER alice', 'PASS nope', loginFailed('AUTH'));
      s = r.state;
      if (i < 3) assert.deepEqual(describe(r.effects), A, `failure ${i}`);
      else assert.deepEqual(describe(r.effects), ['-ERR [AUTH]', 'close']);
    }
    assert.equal(s.phase, 'closed');
  });
  test('failures of every kind count: PLAIN authzid mismatch too', () => {
    let s: SessionState = auth(config({ maxAuthFailures: 2 }));
    s = feed(s, 'USER alice', 'PASS nope', loginFailed('AUTH')).state;
    const r = feed(s, `AUTH PLAIN ${b64('x\0alice\0wonderland')}`);
    assert.deepEqual(describe(r.effects), ['-ERR [AUTH]', 'close']);
  });
  test('lock and delay failures are not counted as authentication failures', () => {
    let s: SessionState = auth(config({ maxAuthFailures: 1 }));
    for (let i = 0; i < 5; i++) s = feed(s, 'USER carol', 'PASS x', loginFailed('IN-USE')).state;
    assert.equal(s.phase, 'authorization');
  });
  test('authentication failures survive STLS', () => {
    let s: SessionState = auth(config({ maxAuthFailures: 2 }));
    s = feed(s, 'USER alice', 'PASS nope', loginFailed('AUTH'), 'STLS', { type: 'tls-started', link: TLS_LINK }).state;
    assert.deepEqual(describe(feed(s, 'USER alice', 'PASS nope', loginFailed('AUTH')).effects), ['-ERR [AUTH]', 'close']);
  });
  test('maxBadCommands: unknown, syntax and too-long lines all count, across states', () => {
    const cfg = config({ maxBadCommands: 4 });
    const s = feed(auth(cfg), 'XYZZY', 'USER', TOO_LONG).state;
    assert.equal(s.badCommands, 3);
    const closed = feed(s, 'STAT');
    assert.deepEqual(closed.effects, [{ type: 'reply', text: '-ERR Too many bad commands, closing connection.\r\n' }, { type: 'close' }]);
    assert.equal(closed.state.phase, 'closed');

    const t = feed(transaction(cfg), 'FOO', 'TOP 1 x', TOO_LONG, 'USER x');
    assert.deepEqual(describe(t.effects), ['-ERR', 'close']);
  });
  test('good commands do not reset the bad-command count', () => {
    const s = feed(auth(config({ maxBadCommands: 2 })), 'XYZZY', 'CAPA', 'CAPA', 'NOPE');
    assert.deepEqual(describe(s.effects), ['-ERR', 'close']);
  });
});

/**
 * fast-check fuzzing of the parser and the session. The invariants:
 *
 * - Nothing throws, whatever the bytes or the order of inputs.
 * - Every step keeps the contract in `checkStep` (harness.ts): only effects the phase allows
 *   (no send-message or commit before login, no login after it), `close` exactly when the phase
 *   becomes closed and always last, at most one reply per step, closed is final.
 * - Reply accounting: every complete line read while the session waits for a command (the
 *   authorization and transaction phases, SASL exchange included) gets exactly one reply, counting
 *   the reply that arrives with the result of a login or commit the line started. That reply is a
 *   `+ ` continuation exactly when the SASL exchange goes on afterwards; otherwise it is a
 *   status line, +OK or -ERR. Lines arriving while a result is pending are not read.
 * - Work is bounded: at most two steps per line (the line, then one result).
 * - The output does not depend on how the input was cut into segments.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  initialState,
  parseCommand,
  parseDecimal,
  step,
  type LinkState,
  type LoginResult,
  type RespCode,
  type SessionConfig,
  type SessionInput,
  type SessionState,
} from '../src/index.js';
import { CONFIG, MESSAGES, apopDigest, b64, checkStep, config, fixedLogin, runScript, type DriverOptions } from './harness.js';

const KEYWORDS = ['USER', 'PASS', 'APOP', 'AUTH', 'STLS', 'CAPA', 'STAT', 'LIST', 'UIDL', 'RETR', 'TOP', 'DELE', 'NOOP', 'RSET', 'QUIT'];
const ARGS = [
  'alice', 'bob', 'wonderland', 'pass', 'word', 'PLAIN', 'LOGIN', 'plain', 'CRAM-MD5',
  '0', '1', '2', '3', '4', '5', '01', '+1', '-1', '1x', '99999999', '99999999999999999999',
  '=', '*', b64('\0alice\0wonderland'), b64('x\0alice\0wonderland'), b64('alice'), b64('wonderland'),
  apopDigest('wonderland'), 'AAAA', '!!!!',
];

const keyword = fc.oneof(
  fc.constantFrom(...KEYWORDS),
  fc.constantFrom(...KEYWORDS).map((k) => k.toLowerCase()),
  fc.constantFrom('', 'XYZZY', 'AUT', 'STATX', '*', '=', b64('\0bob\0pass word'), b64('alice'), b64('wonderland')),
);
const args = fc.array(fc.constantFrom(...ARGS), { maxLength: 3 });
const separator = fc.constantFrom(' ', ' ', ' ', '  ', '\t');
const commandLine = fc.tuple(keyword, args, separator).map(([k, a, sep]) => (a.length === 0 ? k : [k, ...a].join(sep)));
const lineEnd = fc.constantFrom('\r\n', '\r\n', '\n', '\r\r\n');

/** A client stream: mostly plausible commands, some random bytes, some over-long lines. */
const clientBytes = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: fc.tuple(commandLine, lineEnd).map(([l, e]) => Buffer.from(l + e, 'utf8')) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) },
      { weight: 1, arbitrary: fc.integer({ min: 60, max: 300 }).map((n) => Buffer.from(`${'Z'.repeat(n)}\r\n`)) },
    ),
    { maxLength: 40 },
  )
  .map((parts) => Buffer.concat(parts));

const respCode = fc.constantFrom<RespCode>('AUTH', 'IN-USE', 'SYS/TEMP', 'SYS/PERM', 'LOGIN-DELAY');
const loginOutcome: fc.Arbitrary<LoginResult | 'table'> = fc.oneof(
  fc.constant('table' as const),
  fc.constant<LoginResult>({ ok: true, messages: MESSAGES }),
  fc.constant<LoginResult>({ ok: true, messages: [] }),
  respCode.map((code): LoginResult => ({ ok: false, code })),
);

const link: fc.Arbitrary<LinkState> = fc.record({ secure: fc.boolean(), plaintextAllowed: fc.boolean() });
const sessionConfig: fc.Arbitrary<SessionConfig> = fc.record({
  apopTimestamp: fc.constantFrom(null, CONFIG.apopTimestamp),
  implementation: fc.constantFrom(null, 'Postern'),
  tlsAvailable: fc.boolean(),
  saslMechanisms: fc.subarray(['PLAIN', 'LOGIN'] as const),
  loginDelay: fc.constantFrom(null, 0, 900),
  expire: fc.constantFrom(null, 0, 30, 'NEVER' as const),
  maxBadCommands: fc.integer({ min: 1, max: 12 }),
  maxAuthFailures: fc.integer({ min: 1, max: 4 }),
});

const driverOptions: fc.Arbitrary<DriverOptions> = fc
  .record({
    config: sessionConfig,
    link,
    tlsLink: link.map((l) => ({ ...l, secure: true })),
    lineLimit: fc.integer({ min: 4, max: 255 }),
    outcomes: fc.array(loginOutcome, { maxLength: 6 }),
    commitOk: fc.boolean(),
    bodyChunk: fc.integer({ min: 1, max: 64 }),
  })
  .map(({ outcomes, ...rest }) => {
    let i = 0;
    return {
      ...rest,
      login: (mechanism, credentials) => {
        const o = outcomes[i++] ?? 'table';
        return o === 'table' ? fixedLogin(mechanism, credentials) : o;
      },
    } satisfies DriverOptions;
  });

test('fuzz: client bytes through LineReader and step keep every invariant', () => {
  fc.assert(
    fc.property(clientBytes, clientBytes, driverOptions, (clear, tls, opts) => {
      const run = runScript({ clear, tls }, {}, opts);
      const lfs = clear.filter((b) => b === 0x0a).length + tls.filter((b) => b === 0x0a).length;
      assert.ok(run.lines.length <= lfs, 'never more lines than LFs');
      assert.ok(run.steps <= 2 * run.lines.length, `bounded work: ${run.steps} steps for ${run.lines.length} lines`);
      for (const rec of run.lines) {
        assert.ok(rec.phase === 'authorization' || rec.phase === 'transaction');
        assert.equal(rec.replies.length, 1, `one reply per line: ${JSON.stringify(rec)}`);
        const reply = rec.replies[0] as string;
        if (rec.saslAfter) assert.ok(reply.startsWith('+ '), JSON.stringify(rec));
        else assert.match(reply, /^(\+OK|-ERR|send-message )/, JSON.stringify(rec));
        if (reply.startsWith('send-message')) assert.equal(rec.phase, 'transaction');
      }
      // Once closed, nothing more is read.
      if (run.closed) assert.equal(run.state.phase, 'closed');
    }),
    { numRuns: 300 },
  );
});

test('fuzz: output is the same however the client bytes are cut', () => {
  fc.assert(
    fc.property(
      clientBytes,
      fc.array(fc.nat(2000), { maxLength: 12 }),
      sessionConfig,
      link,
      fc.boolean(),
      (clear, cuts, cfg, l, commitOk) => {
        const opts: DriverOptions = { config: cfg, link: l, commitOk, lineLimit: 64 };
        const whole = runScript({ clear }, {}, opts).bytes;
        const cut = runScript({ clear }, { clear: cuts.map((c) => c % (clear.length + 1)) }, opts).bytes;
        assert.ok(cut.equals(whole));
      },
    ),
    { numRuns: 250 },
  );
});

/** Any input at any time, as a confused gateway might send them. */
const anyInput: fc.Arbitrary<SessionInput> = fc.oneof(
  { weight: 10, arbitrary: commandLine.map((line): SessionInput => ({ type: 'line', line })) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }).map((line): SessionInput => ({ type: 'line', line })) },
  { weight: 1, arbitrary: fc.constant<SessionInput>({ type: 'line-too-long' }) },
  {
    weight: 2,
    arbitrary: loginOutcome.map((o): SessionInput => ({ type: 'login-result', result: o === 'table' ? { ok: false, code: 'AUTH' } : o })),
  },
  { weight: 1, arbitrary: link.map((l): SessionInput => ({ type: 'tls-started', link: l })) },
  { weight: 1, arbitrary: fc.boolean().map((ok): SessionInput => ({ type: 'commit-result', ok })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: -1, max: 5 }), fc.nat(200))
      .map(([index, octets]): SessionInput => ({ type: 'message-sent', index, octets })),
  },
  {
    weight: 1,
    arbitrary: fc.option(respCode, { nil: null }).map((code): SessionInput => ({ type: 'abort', code, text: 'Going away.' })),
  },
);

test('fuzz: any sequence of inputs in any phase keeps the step contract', () => {
  fc.assert(
    fc.property(sessionConfig, link, fc.array(anyInput, { maxLength: 60 }), (cfg, l, inputs) => {
      let state: SessionState = initialState(cfg, l);
      let everLoggedIn = false;
      for (const input of inputs) {
        const before = state;
        const { state: after, effects } = step(before, input);
        checkStep(before, input, after, effects);
        for (const e of effects) {
          if (e.type === 'send-message' || e.type === 'commit') assert.ok(everLoggedIn, 'no mailbox access before a login succeeded');
        }
        if (after.phase === 'transaction') everLoggedIn = true;
        if (before.phase === 'closed') assert.deepEqual(effects, []);
        state = after;
      }
    }),
    { numRuns: 1500 },
  );
});

test('fuzz: parseCommand and parseDecimal never throw and agree with their rules', () => {
  fc.assert(
    fc.property(fc.oneof(commandLine, fc.string({ unit: 'binary', maxLength: 40 })), (line) => {
      const r = parseCommand(line);
      const space = line.indexOf(' ');
      const kw = (space === -1 ? line : line.slice(0, space)).toUpperCase();
      if (r.ok) assert.equal(r.command.name, kw);
      else if (r.error === 'syntax') assert.equal(r.keyword, kw);
      else assert.ok(!KEYWORDS.includes(kw));
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 25 }), fc.stringMatching(/^[0-9]{1,25}$/)), (text) => {
      const n = parseDecimal(text);
      if (/^[0-9]{1,20}$/.test(text)) assert.equal(n, Number(text));
      else assert.ok(Number.isNaN(n), JSON.stringify(text));
    }),
    { numRuns: 3000 },
  );
});

test('a long pipelined session: 10 000 commands, at most two steps per line', { timeout: 60_000 }, () => {
  const commands = ['STAT', 'LIST', 'UIDL 1', 'NOOP', 'DELE 2', 'RSET', 'TOP 1 0', 'CAPA'];
  const body = Array.from({ length: 10_000 }, (_, i) => `${commands[i % commands.length]}\r\n`).join('');
  const run = runScript({ clear: `USER alice\r\nPASS wonderland\r\n${body}QUIT\r\n` }, {}, { config: config({ maxBadCommands: 1 }) });
  assert.equal(run.lines.length, 10_003);
  assert.ok(run.steps <= 2 * run.lines.length);
  assert.ok(run.closed);
  assert.deepEqual(run.commits, [[]]);
});

/**
 * Whole sessions through LineReader -> step -> effects, replayed with the client's bytes cut at
 * every position and at random sets of positions: the server's output must not change.
 */
import assert from 'node:assert/strict';
import { describe as group, test } from 'node:test';
import fc from 'fast-check';
import {
  APOP_TIMESTAMP,
  BODIES,
  MESSAGES,
  STRICT_LINK,
  apopDigest,
  b64,
  config,
  runScript,
  topOf,
  type DriverOptions,
  type Script,
} from './harness.js';

interface Case {
  readonly name: string;
  readonly script: Script;
  readonly opts?: DriverOptions;
  /** Checks on the unsplit run, so a replay that is merely stable but wrong still fails. */
  readonly check: (out: string, run: ReturnType<typeof runScript>) => void;
}

const octets = MESSAGES.reduce((a, m) => a + m.size, 0);
const crlf = (...lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');

const CASES: readonly Case[] = [
  {
    name: 'USER/PASS, browse, fetch, delete, quit',
    script: {
      clear: crlf('CAPA', 'USER alice', 'PASS wonderland', 'STAT', 'LIST', 'UIDL', 'RETR 1', 'TOP 2 1', 'DELE 1', 'LIST', 'QUIT'),
    },
    check: (_out, run) => {
      assert.deepEqual(run.commits, [[0]]);
      const r = responses(run.bytes, ['CAPA', 'USER', 'PASS', 'STAT', 'LIST', 'UIDL', 'RETR', 'TOP', 'DELE', 'LIST', 'QUIT']);
      assert.deepEqual(
        r.map((x) => x.status),
        [
          `+OK Postern ready. ${APOP_TIMESTAMP}`,
          '+OK Capability list follows',
          '+OK Send your password.',
          `+OK Logged in, 4 messages (${octets} octets).`,
          `+OK 4 ${octets}`,
          `+OK 4 messages (${octets} octets)`,
          '+OK Unique-ID listing follows',
          `+OK ${MESSAGES[0]!.size} octets`,
          `+OK ${topOf(BODIES[1]!, 1).length} octets`,
          '+OK Message 1 deleted.',
          `+OK 3 messages (${octets - MESSAGES[0]!.size} octets)`,
          '+OK Postern signing off (3 messages left).',
        ],
      );
      assert.deepEqual(r[1]!.body, ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'USER', 'SASL PLAIN LOGIN', 'STLS', 'IMPLEMENTATION Postern']);
      assert.deepEqual(r[6]!.body, MESSAGES.map((m, i) => `${i + 1} ${m.uid}`));
      assert.equal(joinBody(r[7]!.body), BODIES[0]!.toString('latin1'));
      assert.equal(joinBody(r[8]!.body), 'Subject: plain\r\nX-Long: yes\r\n\r\nline 1\r\n');
      assert.deepEqual(r[10]!.body, MESSAGES.slice(1).map((m, i) => `${i + 2} ${m.size}`));
    },
  },
  {
    name: 'pipelined, lower case, bare LF line ends',
    script: { clear: 'user bob\npass pass word\nstat\nlist 2\nuidl 3\nretr 4\ndele 4\nstat\nquit\n' },
    check: (out, run) => {
      assert.deepEqual(run.commits, [[3]]);
      // Message 4 starts with a dot in its first header line.
      assert.ok(out.includes('\r\n..Subject: dot header\r\n\r\n.\r\n'));
      assert.ok(out.includes(`+OK 2 ${MESSAGES[1]!.size}\r\n+OK 3 ${MESSAGES[2]!.uid}\r\n`));
    },
  },
  {
    name: 'APOP, fetch all, delete, RSET, delete again',
    script: {
      clear: crlf(`APOP alice ${apopDigest('wonderland')}`, 'RETR 1', 'RETR 2', 'RETR 3', 'RETR 4', 'DELE 2', 'DELE 3', 'RSET', 'DELE 4', 'DELE 4', 'QUIT'),
    },
    check: (out, run) => {
      assert.deepEqual(run.logins.map((l) => l.mechanism), ['APOP']);
      assert.deepEqual(run.commits, [[3]]);
      assert.ok(out.includes('-ERR Message 4 already deleted.\r\n'));
      // Message 3 has no final newline: the terminator adds it.
      assert.ok(out.includes('\r\n..first\r\nno final newline\r\n.\r\n'));
    },
  },
  {
    name: 'AUTH PLAIN with continuation, TOP variants',
    script: { clear: crlf('AUTH PLAIN', b64('\0alice\0wonderland'), 'TOP 1 0', 'TOP 1 99999999', 'TOP 3 1', 'TOP 1 x', 'QUIT') },
    check: (out, run) => {
      assert.deepEqual(run.logins.map((l) => l.mechanism), ['PLAIN']);
      const r = responses(run.bytes, ['AUTH', 'CONT', 'TOP', 'TOP', 'TOP', 'ERR', 'QUIT']);
      assert.equal(r[1]!.status, '+ ');
      assert.equal(joinBody(r[3]!.body), 'From: alice@example.org\r\nSubject: dots\r\n\r\n');
      assert.equal(joinBody(r[4]!.body), BODIES[0]!.toString('latin1'));
      assert.equal(joinBody(r[5]!.body), 'Subject: open end\r\n\r\n.first\r\n');
      assert.ok(out.includes('-ERR Syntax error in TOP.\r\n'));
    },
  },
  {
    name: 'AUTH LOGIN two-step, message numbers',
    script: { clear: crlf('AUTH LOGIN', b64('alice'), b64('wonderland'), 'RETR 0', 'RETR 01', 'RETR +1', 'LIST 9', 'UIDL 2', 'QUIT') },
    check: (out, run) => {
      assert.ok(out.includes('+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK Logged in'));
      assert.equal(out.split('-ERR No such message.\r\n').length - 1, 3);
      assert.deepEqual(run.commits, [[]]);
    },
  },
  {
    name: 'AUTH LOGIN with initial response, AUTH PLAIN initial response',
    script: { clear: crlf(`AUTH LOGIN ${b64('carol')}`, b64('x'), `AUTH PLAIN ${b64('\0bob\0pass word')}`, 'STAT', 'QUIT') },
    check: (out) => {
      assert.ok(out.includes('+ UGFzc3dvcmQ6\r\n-ERR [IN-USE] '));
      assert.ok(out.includes('+OK Logged in, 4 messages'));
    },
  },
  {
    name: 'three authentication failures close the connection; later input is ignored',
    script: {
      clear: crlf('USER alice', 'PASS wrong', `AUTH PLAIN ${b64('root\0alice\0wonderland')}`, 'USER dave', 'PASS x', 'USER erin', 'PASS x', 'USER zed', 'PASS zed', 'USER alice', 'PASS wonderland', 'STAT'),
    },
    check: (out, run) => {
      assert.ok(run.closed);
      assert.deepEqual(run.logins.map((l) => l.credentials.username), ['alice', 'dave', 'erin', 'zed']);
      assert.ok(out.includes('-ERR [LOGIN-DELAY] '));
      assert.ok(out.includes('-ERR [SYS/TEMP] '));
      assert.ok(out.endsWith('Too many failures, closing connection.\r\n'));
    },
  },
  {
    name: 'bad commands and a too-long line until disconnect',
    script: { clear: `NOOP\r\nSTAT\r\n${'X'.repeat(400)}\r\nFOO\r\nUSER\r\nPASS\r\nRETR 1\r\nDELE\r\nTOP\r\nAUTH NOPE\r\nCAPA\r\n` },
    check: (out, run) => {
      assert.ok(run.closed);
      assert.equal(out.split('\r\n-ERR').length - 1, 10);
      assert.ok(out.includes('-ERR Line too long.\r\n'));
      assert.ok(out.endsWith('-ERR Too many bad commands, closing connection.\r\n'));
      assert.ok(!out.includes('Capability'));
    },
  },
  {
    name: 'STLS: commands injected after STLS in clear are never acted on',
    script: { clear: crlf('CAPA', 'USER alice', 'STLS', 'PASS wonderland', 'DELE 1'), tls: crlf('CAPA', 'PASS wonderland', 'USER alice', 'PASS wonderland', 'DELE 2', 'QUIT') },
    check: (out, run) => {
      assert.deepEqual(run.logins.length, 1);
      assert.deepEqual(run.commits, [[1]]);
      assert.ok(out.includes('+OK Begin TLS negotiation now.\r\n+OK Capability list follows'));
      assert.ok(out.includes('-ERR No username given, use USER first.\r\n'));
      const afterTls = out.slice(out.indexOf('Begin TLS'));
      assert.ok(!afterTls.includes('STLS\r\n'));
    },
  },
  {
    name: 'plaintext refused until STLS',
    opts: { link: STRICT_LINK },
    script: { clear: crlf('CAPA', 'USER alice', 'AUTH PLAIN', 'STLS'), tls: crlf(`AUTH PLAIN ${b64('\0alice\0wonderland')}`, 'LIST', 'QUIT') },
    check: (out, run) => {
      assert.equal(out.split('-ERR [AUTH] Plaintext authentication disallowed').length - 1, 2);
      assert.ok(!out.slice(0, out.indexOf('Begin TLS')).includes('\r\nUSER\r\n'));
      assert.deepEqual(run.commits, [[]]);
    },
  },
  {
    name: 'SASL cancel, bad base64, empty response, then USER/PASS',
    script: { clear: crlf('AUTH LOGIN', '*', 'AUTH PLAIN', '!!!!', 'AUTH PLAIN =', 'AUTH', 'USER bob', 'PASS pass word', 'RETR 4', 'QUIT') },
    check: (out) => {
      assert.ok(out.includes('-ERR Authentication cancelled.\r\n'));
      assert.ok(out.includes('-ERR Invalid base64 data.\r\n'));
      assert.ok(out.includes('-ERR Malformed PLAIN response.\r\n'));
      assert.ok(out.includes('+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n'));
    },
  },
  {
    name: 'the commit fails: -ERR [SYS/TEMP] after QUIT',
    opts: { commitOk: false },
    script: { clear: crlf('USER alice', 'PASS wonderland', 'DELE 1', 'DELE 3', 'QUIT', 'NOOP') },
    check: (out, run) => {
      assert.deepEqual(run.commits, [[0, 2]]);
      assert.ok(out.endsWith('-ERR [SYS/TEMP] Some deleted messages not removed, try again later.\r\n'));
    },
  },
  {
    name: 'UTF-8 password, CR inside a line, empty lines, LOGIN-DELAY and EXPIRE advertised',
    opts: { config: config({ loginDelay: 300, expire: 'NEVER', implementation: null, apopTimestamp: null }) },
    script: { clear: Buffer.from('\r\n\r\nUSER bob\r\nPASS gr\u00fc\u00df\r\nST\rAT\r\nCAPA\r\nquit\r\n', 'utf8') },
    check: (out, run) => {
      assert.equal(run.logins[0]!.credentials.kind === 'password' && run.logins[0]!.credentials.password, 'gr\u00fc\u00df');
      assert.ok(out.startsWith('+OK POP3 ready.\r\n-ERR Unknown command.\r\n-ERR Unknown command.\r\n'));
      assert.ok(out.includes('LOGIN-DELAY 300\r\nEXPIRE NEVER\r\n.\r\n'));
      assert.ok(out.endsWith('+OK POP3 signing off.\r\n'));
    },
  },
];

// --- a client's view of the output -----------------------------------------------------------

interface Response {
  readonly status: string;
  readonly body: string[];
}

/** Multi-line iff +OK to one of these (RFC 1939, 2449, and AUTH's mechanism list). */
const MULTI = new Set(['CAPA', 'LIST', 'UIDL', 'RETR', 'TOP', 'AUTH']);

/** Splits output into the greeting and one response per command kind, unstuffing bodies. */
function responses(output: Buffer, kinds: readonly string[]): Response[] {
  const lines = output.toString('latin1').split('\r\n');
  assert.equal(lines.pop(), '', 'output ends with CRLF');
  let at = 0;
  const take = (): string => {
    assert.ok(at < lines.length, 'output ended early');
    return lines[at++] as string;
  };
  const out: Response[] = [{ status: take(), body: [] }];
  for (const kind of kinds) {
    const status = take();
    const body: string[] = [];
    if (status.startsWith('+OK') && MULTI.has(kind)) {
      for (let l = take(); l !== '.'; l = take()) body.push(l.startsWith('.') ? l.slice(1) : l);
    }
    out.push({ status, body });
  }
  assert.equal(at, lines.length, 'no output left over');
  return out;
}

const joinBody = (body: readonly string[]): string => body.map((l) => `${l}\r\n`).join('');

// ---------------------------------------------------------------------------------------------

group('scripted sessions replayed at every split', () => {
  for (const c of CASES) {
    const clear = typeof c.script.clear === 'string' ? Buffer.from(c.script.clear) : c.script.clear;
    const tls = c.script.tls === undefined ? undefined : Buffer.from(c.script.tls);

    test(c.name, () => {
      const whole = runScript(c.script, {}, c.opts);
      const expected = whole.bytes;
      c.check(expected.toString('latin1'), whole);
      // One reply per command line; "+ " exactly while a SASL exchange goes on.
      for (const rec of whole.lines) {
        assert.equal(rec.replies.length, 1, JSON.stringify(rec));
        assert.equal(rec.replies[0]!.startsWith('+ '), rec.saslAfter, JSON.stringify(rec));
      }

      for (let i = 0; i <= clear.length; i++) {
        assert.ok(runScript(c.script, { clear: [i] }, c.opts).bytes.equals(expected), `clear split at ${i}`);
      }
      if (tls !== undefined) {
        for (let i = 0; i <= tls.length; i++) {
          assert.ok(runScript(c.script, { tls: [i] }, c.opts).bytes.equals(expected), `tls split at ${i}`);
        }
      }
      // Byte by byte.
      const all = Array.from({ length: clear.length + 1 }, (_, i) => i);
      const allTls = tls === undefined ? [] : Array.from({ length: tls.length + 1 }, (_, i) => i);
      assert.ok(runScript(c.script, { clear: all, tls: allTls }, c.opts).bytes.equals(expected), 'byte by byte');

      fc.assert(
        fc.property(
          fc.array(fc.nat(clear.length), { maxLength: 16 }),
          fc.array(fc.nat(tls?.length ?? 0), { maxLength: 16 }),
          (cutsClear, cutsTls) => {
            assert.ok(runScript(c.script, { clear: cutsClear, tls: cutsTls }, c.opts).bytes.equals(expected));
          },
        ),
        { numRuns: 100 },
      );
    });
  }
});

test('bodies are streamed in chunks of any size with the same result', () => {
  const script: Script = { clear: crlf('USER alice', 'PASS wonderland', 'RETR 1', 'RETR 3', 'RETR 4', 'TOP 1 2', 'QUIT') };
  const expected = runScript(script, {}, { bodyChunk: 1 << 20 }).bytes;
  for (let size = 1; size <= 90; size++) assert.ok(runScript(script, {}, { bodyChunk: size }).bytes.equals(expected), `chunk ${size}`);
});

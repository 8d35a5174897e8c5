import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCommand, type ParseResult } from '../src/index.js';

const ok = (command: object): ParseResult => ({ ok: true, command } as ParseResult);
const syntax = (keyword: string): ParseResult => ({ ok: false, error: 'syntax', keyword });
const unknown = (keyword: string): ParseResult => ({ ok: false, error: 'unknown', keyword });

const TABLE: readonly [string, ParseResult][] = [
  ['STAT', ok({ name: 'STAT' })],
  ['stat', ok({ name: 'STAT' })],
  ['Stat ', ok({ name: 'STAT' })],
  ['STAT 1', syntax('STAT')],
  ['LIST', ok({ name: 'LIST', msg: null })],
  ['LIST 3', ok({ name: 'LIST', msg: '3' })],
  ['UIDL 3', ok({ name: 'UIDL', msg: '3' })],
  // Runs of spaces separate arguments; the number itself is checked by the session.
  ['RETR  1', ok({ name: 'RETR', msg: '1' })],
  ['RETR 1x', ok({ name: 'RETR', msg: '1x' })],
  ['RETR', syntax('RETR')],
  ['RETR 1 2', syntax('RETR')],
  ['TOP 1 10', ok({ name: 'TOP', msg: '1', lines: '10' })],
  ['TOP 1', syntax('TOP')],
  ['DELE 4', ok({ name: 'DELE', msg: '4' })],
  ['USER alice', ok({ name: 'USER', user: 'alice' })],
  ['USER', syntax('USER')],
  ['USER alice smith', syntax('USER')],
  // RFC 1939 section 7: the password is the rest of the line, spaces included.
  ['PASS  two  spaces ', ok({ name: 'PASS', password: ' two  spaces ' })],
  ['PASS', syntax('PASS')],
  ['PASS ', syntax('PASS')],
  ['APOP alice c4c9334bac560ecc979e58001b3e22fb', ok({ name: 'APOP', user: 'alice', digest: 'c4c9334bac560ecc979e58001b3e22fb' })],
  ['APOP alice', syntax('APOP')],
  // The mechanism is case-insensitive; the base64 initial response is not.
  ['auth plain AGFsaWNl', ok({ name: 'AUTH', mechanism: 'PLAIN', initialResponse: 'AGFsaWNl' })],
  ['AUTH', ok({ name: 'AUTH', mechanism: null, initialResponse: null })],
  ['AUTH PLAIN a b', syntax('AUTH')],
  ['STLS', ok({ name: 'STLS' })],
  ['CAPA', ok({ name: 'CAPA' })],
  ['NOOP', ok({ name: 'NOOP' })],
  ['RSET', ok({ name: 'RSET' })],
  ['QUIT', ok({ name: 'QUIT' })],
  ['QUIT now', syntax('QUIT')],
  // A tab is not a separator; a leading space leaves an empty keyword.
  ['STAT\t', unknown('STAT\t')],
  [' STAT', unknown('')],
  ['', unknown('')],
  ['XTND XMIT', unknown('XTND')],
  ['VERYLONGKEYWORD', unknown('VERYLONG')],
  ['__PROTO__', unknown('__PROTO_')],
  ['TOSTRING', unknown('TOSTRING')],
];

for (const [line, expected] of TABLE) {
  test(`parseCommand(${JSON.stringify(line)})`, () => {
    assert.deepEqual(parseCommand(line), expected);
  });
}

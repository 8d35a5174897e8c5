// Pure unit tests: RFC 4515 filter escaping, RFC 4514 DN escaping, templates, AD state decoding.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  adBindFailure,
  escapeDnValue,
  escapeFilterValue,
  fillTemplate,
  formatGuid,
  loginAttributeOf,
  parseLdapUrl,
  ppolicyLock,
  refusalFromAttributes,
  templateIsDn,
} from '../src/index.js';

describe('RFC 4515 filter value escaping', () => {
  it('escapes the five special characters (RFC 4515 section 3 examples)', () => {
    assert.equal(escapeFilterValue('Parens R Us (for all your parenthetical needs)'), 'Parens R Us \\28for all your parenthetical needs\\29');
    assert.equal(escapeFilterValue('*'), '\\2a');
    assert.equal(escapeFilterValue('C:\\MyFile'), 'C:\\5cMyFile');
    assert.equal(escapeFilterValue('a\0b'), 'a\\00b');
    assert.equal(escapeFilterValue('Lučić'), 'Lučić');
  });

  it('an injected value never leaves its assertion: no bare * ( ) or NUL survive', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const e = escapeFilterValue(s);
        assert.ok(!/[*()\0]/.test(e), e);
        // Every backslash starts a two-hex-digit escape.
        assert.ok(/^(?:[^\\]|\\[0-9a-f]{2})*$/.test(e), e);
        // Decoding gives the input back.
        assert.equal(e.replace(/\\([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), s);
      }),
    );
  });

  it('fills %u in a filter template with the escaped value', () => {
    assert.equal(fillTemplate('(&(objectClass=user)(sAMAccountName=%u))', 'x)(|(uid=*', escapeFilterValue), '(&(objectClass=user)(sAMAccountName=x\\29\\28|\\28uid=\\2a))');
    assert.equal(fillTemplate('(|(uid=%u)(mail=%u))', 'a', escapeFilterValue), '(|(uid=a)(mail=a))');
    assert.equal(fillTemplate('100%%(%u)', 'a', escapeFilterValue), '100%(a)');
    assert.throws(() => fillTemplate('(uid=%s)', 'a', escapeFilterValue), /unknown placeholder %s/);
  });
});

describe('RFC 4514 DN value escaping', () => {
  it('escapes specials, leading space or #, trailing space, NUL', () => {
    assert.equal(escapeDnValue('Sue, Grabbit and Runn'), 'Sue\\, Grabbit and Runn');
    assert.equal(escapeDnValue('a+b=c;d<e>f"g\\h'), 'a\\+b\\=c\\;d\\<e\\>f\\"g\\\\h');
    assert.equal(escapeDnValue(' #x '), '\\ #x\\ ');
    assert.equal(escapeDnValue('#x'), '\\#x');
    assert.equal(escapeDnValue('a\0'), 'a\\00');
    assert.equal(fillTemplate('uid=%u,ou=people,dc=example,dc=com', 'alice,ou=admins', escapeDnValue), 'uid=alice\\,ou\\=admins,ou=people,dc=example,dc=com');
  });

  it('tells DN templates from UPN and down-level names', () => {
    assert.equal(templateIsDn('uid=%u,ou=people,dc=example,dc=com'), true);
    assert.equal(templateIsDn('%u@example.com'), false);
    assert.equal(templateIsDn('EXAMPLE\\%u'), false);
  });

  it('finds the login attribute of a filter template', () => {
    assert.equal(loginAttributeOf('(&(objectClass=user)(sAMAccountName=%u))'), 'sAMAccountName');
    assert.equal(loginAttributeOf('(uid=%u)'), 'uid');
    assert.equal(loginAttributeOf('(cn=*)'), null);
  });
});

describe('account state', () => {
  const now = Date.UTC(2026, 0, 1);
  it('reads AD userAccountControl, the computed flags and accountExpires', () => {
    assert.match(refusalFromAttributes({ userAccountControl: '514' }, now) ?? '', /disabled/);
    assert.equal(refusalFromAttributes({ userAccountControl: '512' }, now), null);
    assert.match(refusalFromAttributes({ 'msDS-User-Account-Control-Computed': '16' }, now) ?? '', /locked/);
    assert.match(refusalFromAttributes({ 'msds-user-account-control-computed': String(0x800000) }, now) ?? '', /password expired/);
    // 2020-01-01 as FILETIME; 0 and 2^63-1 mean never.
    const past = (BigInt(Date.UTC(2020, 0, 1)) + 11_644_473_600_000n) * 10_000n;
    assert.match(refusalFromAttributes({ accountExpires: past.toString() }, now) ?? '', /expired/);
    assert.equal(refusalFromAttributes({ accountExpires: '0' }, now), null);
    assert.equal(refusalFromAttributes({ accountExpires: '9223372036854775807' }, now), null);
    assert.equal(refusalFromAttributes({ pwdAccountLockedTime: '000001010000Z' }, now), null);
    // After a failed bind any lock names the reason; after a successful one only the permanent lock.
    assert.match(ppolicyLock({ pwdAccountLockedTime: '20260101000000Z' }, false) ?? '', /ppolicy/);
    assert.equal(ppolicyLock({ pwdAccountLockedTime: '20260101000000Z' }, true), null);
    assert.match(ppolicyLock({ pwdAccountLockedTime: '000001010000Z' }, true) ?? '', /ppolicy pwdAccountLockedTime 000001010000Z/);
    assert.equal(ppolicyLock({ uid: 'x' }, false), null);
  });

  it('maps the AD bind data codes', () => {
    const msg = (code: string): string => `80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data ${code}, v3839 Code: 0x31`;
    assert.deepEqual(adBindFailure(msg('52e')), { refused: false, reason: 'invalid credentials (AD data 52e)' });
    assert.equal(adBindFailure(msg('525'))?.refused, false);
    for (const code of ['530', '531', '532', '533', '701', '773', '775']) assert.equal(adBindFailure(msg(code))?.refused, true, code);
    assert.match(adBindFailure(msg('775'))?.reason ?? '', /locked/);
    assert.match(adBindFailure(msg('533'))?.reason ?? '', /disabled/);
    assert.equal(adBindFailure('Invalid credentials Code: 0x31'), null);
  });

  it('formats objectGUID like Windows (mixed endian)', () => {
    const bytes = Buffer.from('33221100554477668899aabbccddeeff', 'hex');
    assert.equal(formatGuid(bytes), '00112233-4455-6677-8899-aabbccddeeff');
    assert.throws(() => formatGuid(Buffer.alloc(15)), /16 bytes/);
  });

  it('parses LDAP URLs and refuses others', () => {
    assert.deepEqual(parseLdapUrl('ldaps://dc1.example.com'), { url: 'ldaps://dc1.example.com', host: 'dc1.example.com', port: 636, secure: true });
    assert.equal(parseLdapUrl('ldap://127.0.0.1:3890').port, 3890);
    assert.throws(() => parseLdapUrl('http://x'), /not an ldap/);
    assert.throws(() => parseLdapUrl('ldap://x/dc=example'), /only scheme, host and port/);
  });
});

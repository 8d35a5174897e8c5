// LdapBackend against a real Samba Active Directory DC: logins by sAMAccountName and by UPN,
// objectGUID as the mailbox id, every refused state (disabled, locked, expired, must change,
// outside the required group, nested membership), AD bind data codes in direct-bind mode
// (UPN and DOMAIN\user), proxyAddresses lookups, injection, a certificate that does not name
// the host, and a stopped DC.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AuthResult } from '@postern/accounts';
import { startSambaAd, type SambaAd } from '@postern/testkit';
import { LdapBackend, type LdapBackendOptions } from '../src/index.js';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function failure(r: AuthResult): string {
  assert.equal(r.ok, false, `expected a failure, got ${JSON.stringify(r)}`);
  return r.ok ? '' : `${r.failure}: ${r.reason}`;
}

describe('LdapBackend against Samba AD', () => {
  let ad: SambaAd;
  const backends: LdapBackend[] = [];
  const password = (name: string): string => {
    const u = ad.users.find((x) => x.name === name);
    assert.ok(u, name);
    return u.password;
  };
  const open = (overrides: Partial<LdapBackendOptions> = {}): LdapBackend => {
    const b = new LdapBackend({
      urls: [ad.ldapsUrl],
      mode: 'search-bind',
      bindDn: ad.serviceUpn,
      bindPassword: ad.servicePassword,
      baseDn: ad.baseDn,
      userFilter: '(&(objectClass=user)(|(sAMAccountName=%u)(userPrincipalName=%u)))',
      ca: ad.certificates.ca,
      mailboxAttribute: 'objectGUID',
      mailAttributes: ['mail', 'proxyAddresses'],
      requiredGroup: ad.groupDn('mailusers'),
      requiredGroupNested: true,
      timeoutMs: 3_000,
      ...overrides,
    });
    backends.push(b);
    return b;
  };

  before(async () => {
    ad = await startSambaAd();
  });
  after(async () => {
    await Promise.all(backends.map((b) => b.close()));
    await ad?.stop();
  });

  it('good login by sAMAccountName and by UPN: same account, objectGUID as Samba prints it', async () => {
    const ldap = open();
    const bySam = await ldap.verifyPassword({ username: 'alice', password: password('alice') });
    assert.ok(bySam.ok, JSON.stringify(bySam));
    assert.match(bySam.account.mailboxId, GUID);
    assert.equal(bySam.account.mailboxId, ad.guids.alice);
    assert.equal(bySam.account.username, 'alice');
    const byUpn = await ldap.verifyPassword({ username: 'alice@example.com', password: password('alice') });
    assert.ok(byUpn.ok, JSON.stringify(byUpn));
    assert.deepEqual(byUpn.account, bySam.account);
  });

  it('wrong password and unknown user are invalid', async () => {
    const ldap = open();
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: 'Wrong-Pass-9!' })), /^invalid: invalid credentials \(AD data 52e\)/);
    assert.match(failure(await ldap.verifyPassword({ username: 'nobody', password: 'x' })), /^invalid: unknown user/);
    // A good login resets badPwdCount, so this test never locks alice.
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: password('alice') })).ok);
  });

  it('disabled, locked, expired and must-change accounts are refused with the real reason', async () => {
    const ldap = open();
    const cases: [string, RegExp][] = [
      ['disabled', /^refused: account disabled \(AD data 533\)/],
      ['locked', /^refused: account locked out \(AD data 775\)/],
      ['expired', /^refused: account expired \(AD data 701\)/],
      ['mustchange', /^refused: password must be changed \(AD data 773\)/],
    ];
    for (const [name, reason] of cases) {
      assert.match(failure(await ldap.verifyPassword({ username: name, password: password(name) })), reason, name);
    }
  });

  it('required group: nested membership (1.2.840.113556.1.4.1941) counts, a non-member is refused', async () => {
    const nested = open();
    const r = await nested.verifyPassword({ username: 'nested', password: password('nested') });
    assert.ok(r.ok, JSON.stringify(r));
    assert.match(failure(await nested.verifyPassword({ username: 'bob', password: password('bob') })), /^refused: not a member of CN=mailusers/);
    // Direct membership only: the nested member is not in mailusers itself.
    const direct = open({ requiredGroupNested: false });
    assert.ok((await direct.verifyPassword({ username: 'alice', password: password('alice') })).ok);
    assert.match(failure(await direct.verifyPassword({ username: 'nested', password: password('nested') })), /^refused: not a member/);
    // Without a required group bob gets in.
    const anyone = open({ requiredGroup: undefined });
    assert.ok((await anyone.verifyPassword({ username: 'bob', password: password('bob') })).ok);
  });

  it('direct bind as user@example.com and EXAMPLE\\user: the AD data codes name the reason', async () => {
    for (const bindTemplate of ['%u@example.com', 'EXAMPLE\\%u']) {
      const ldap = open({ mode: 'direct-bind', bindTemplate, userFilter: '(&(objectClass=user)(sAMAccountName=%u))' });
      const ok = await ldap.verifyPassword({ username: 'alice', password: password('alice') });
      assert.ok(ok.ok, `${bindTemplate}: ${JSON.stringify(ok)}`);
      assert.equal(ok.account.mailboxId, ad.guids.alice);
      assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: 'Wrong-Pass-9!' })), /^invalid: .*52e/, bindTemplate);
      assert.match(failure(await ldap.verifyPassword({ username: 'nobody', password: 'Wrong-Pass-9!' })), /^invalid/, bindTemplate);
      assert.match(failure(await ldap.verifyPassword({ username: 'disabled', password: password('disabled') })), /^refused: account disabled \(AD data 533\)/, bindTemplate);
      assert.match(failure(await ldap.verifyPassword({ username: 'locked', password: password('locked') })), /^refused: account locked out \(AD data 775\)/, bindTemplate);
      assert.match(failure(await ldap.verifyPassword({ username: 'expired', password: password('expired') })), /^refused: account expired \(AD data 701\)/, bindTemplate);
      assert.match(failure(await ldap.verifyPassword({ username: 'mustchange', password: password('mustchange') })), /^refused: password must be changed \(AD data 773\)/, bindTemplate);
      // The template supplies the domain: a name carrying its own is refused before any bind.
      assert.match(failure(await ldap.verifyPassword({ username: 'alice@evil.example', password: password('alice') })), /^invalid: username contains/);
    }
  });

  it('filter injection: *, )( and NUL find nobody', async () => {
    const ldap = open({ requiredGroup: undefined });
    for (const username of ['*', 'a*', '*)(sAMAccountName=*', 'alice)(|(objectClass=*', 'alice\0', '\0*']) {
      assert.match(failure(await ldap.verifyPassword({ username, password: password('alice') })), /^invalid/, JSON.stringify(username));
      assert.equal(await ldap.lookup(username), null, JSON.stringify(username));
    }
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: '*' })), /^invalid/);
  });

  it('lookup by mail and by proxyAddresses (smtp: prefix) resolves to the objectGUID; hasLogin', async () => {
    const ldap = open();
    for (const address of ['alice@example.com', 'alice.alias@example.com', 'ALICE.ALIAS@example.com', 'alice']) {
      const a = await ldap.lookup(address);
      assert.deepEqual(a, { username: 'alice', mailboxId: ad.guids.alice, backend: 'ldap' }, address);
    }
    assert.equal(await ldap.lookup('nobody@example.com'), null);
    assert.equal(await ldap.hasLogin('alice'), true);
    assert.equal(await ldap.hasLogin('nobody'), false);
  });

  it('plain LDAP: refused by the backend unless allowed; StartTLS works', async () => {
    assert.throws(() => open({ urls: [ad.url] }), /LDAP_URLS: .*in the clear/);
    const starttls = open({ urls: [ad.url], startTls: true });
    assert.ok((await starttls.verifyPassword({ username: 'alice', password: password('alice') })).ok);
  });

  it('a certificate that does not name the host is refused: ldaps://[::1] (the certificate names 127.0.0.1 and localhost)', async () => {
    const ldap = open({ urls: ['ldaps://[::1]:636'] });
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: password('alice') })), /^temporary: .*(IP|altnames)/i);
  });

  it('a stopped DC: temporary within the deadline, then logins work again', async () => {
    const ldap = open({ timeoutMs: 800 });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: password('alice') })).ok);
    await ad.process.pause();
    try {
      const started = Date.now();
      assert.match(failure(await ldap.verifyPassword({ username: 'bob', password: password('bob') })), /^temporary: /);
      const took = Date.now() - started;
      assert.ok(took >= 700 && took < 2_500, `took ${took} ms`);
    } finally {
      ad.process.signal('SIGCONT');
    }
    assert.ok((await ldap.verifyPassword({ username: 'nested', password: password('nested') })).ok);
  });
});

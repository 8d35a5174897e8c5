// LdapBackend against a real OpenLDAP (Debian slapd) on loopback: search-bind over LDAPS and
// StartTLS, direct bind, ppolicy locks, the required group, filter injection, failover, a dead
// and a slow server, a certificate for the wrong host, the credential cache and the chain.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ChainBackend, CredentialCache, PasswdFileBackend, type AuthResult } from '@postern/accounts';
import { freePort, SLAPD_DEFAULT_USERS, startSlapd, type Slapd } from '@postern/testkit';
import { LdapBackend, ldapOptionsFromConfig, type LdapBackendOptions } from '../src/index.js';

const ALICE = 'alice-ldap-secret';
const WEIRD = { uid: 'we(ird)*', password: 'weird-ldap-secret' };

function failure(r: AuthResult): string {
  assert.equal(r.ok, false, 'expected a failure');
  return r.ok ? '' : `${r.failure}: ${r.reason}`;
}

/** A TCP server that accepts and never answers. */
async function blackHole(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('LdapBackend against slapd', () => {
  let slapd: Slapd;
  const backends: LdapBackend[] = [];
  const open = (overrides: Partial<LdapBackendOptions> = {}, server: Slapd = slapd): LdapBackend => {
    const b = new LdapBackend({
      urls: [server.ldapsUrl],
      mode: 'search-bind',
      bindDn: server.serviceDn,
      bindPassword: server.servicePassword,
      baseDn: server.baseDn,
      userFilter: '(&(objectClass=inetOrgPerson)(uid=%u))',
      ca: server.certificates.ca,
      mailboxAttribute: 'entryUUID',
      mailAttributes: ['mail'],
      timeoutMs: 2_000,
      connectTimeoutMs: 1_000,
      ...overrides,
    });
    backends.push(b);
    return b;
  };

  before(async () => {
    slapd = await startSlapd({ users: [...SLAPD_DEFAULT_USERS, WEIRD] });
  });
  after(async () => {
    await Promise.all(backends.map((b) => b.close()));
    await slapd?.stop();
  });

  it('search-bind over LDAPS: good login gives the entryUUID as mailbox id and the stored uid', async () => {
    const ldap = open();
    const r = await ldap.verifyPassword({ username: 'alice', password: ALICE });
    assert.ok(r.ok, JSON.stringify(r));
    const uuid = /entryUUID: (\S+)/.exec(await slapd.search(slapd.userDn('alice'), '(objectClass=*)', ['entryUUID']))?.[1];
    assert.equal(r.account.mailboxId, uuid);
    assert.equal(r.account.username, 'alice');
    assert.equal(r.account.backend, 'ldap');
    // One search as the service account, one bind as the user (plus the service bind once per pooled connection).
    const before = { ...ldap.stats };
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
    assert.deepEqual({ binds: ldap.stats.binds - before.binds, searches: ldap.stats.searches - before.searches, connects: ldap.stats.connects - before.connects }, { binds: 1, searches: 1, connects: 0 });
  });

  it('wrong password and unknown user are both invalid; an empty password binds nothing', async () => {
    const ldap = open();
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: 'wrong' })), /^invalid: wrong password/);
    assert.match(failure(await ldap.verifyPassword({ username: 'nobody', password: 'x' })), /^invalid: unknown user/);
    const binds = ldap.stats.binds;
    const searches = ldap.stats.searches;
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: '' })), /^invalid: empty/);
    assert.equal(ldap.stats.binds, binds);
    assert.equal(ldap.stats.searches, searches);
  });

  it('ppolicy: a seeded pwdAccountLockedTime refuses the right password, naming the reason', async () => {
    const ldap = open();
    assert.match(failure(await ldap.verifyPassword({ username: 'locked', password: 'locked-ldap-secret' })), /^refused: .*pwdAccountLockedTime/);
  });

  it('ppolicy: two failed binds lock the account; then the right password is refused', async () => {
    const ldap = open();
    assert.ok((await ldap.verifyPassword({ username: 'lockme', password: 'lockme-ldap-secret' })).ok);
    assert.match(failure(await ldap.verifyPassword({ username: 'lockme', password: 'bad-1' })), /^invalid/);
    await ldap.verifyPassword({ username: 'lockme', password: 'bad-2' });
    assert.match(await slapd.search(slapd.userDn('lockme'), '(objectClass=*)', ['pwdAccountLockedTime']), /pwdAccountLockedTime: /);
    assert.match(failure(await ldap.verifyPassword({ username: 'lockme', password: 'lockme-ldap-secret' })), /^refused: account locked \(ppolicy/);
  });

  it('ppolicy: a lock whose duration has passed does not refuse a bind slapd lets through', async () => {
    const dn = slapd.userDn('carl');
    await slapd.modify(
      [
        `dn: cn=short,ou=policies,${slapd.baseDn}`,
        'changetype: add',
        'objectClass: pwdPolicy',
        'objectClass: device',
        'cn: short',
        'pwdAttribute: userPassword',
        'pwdLockout: TRUE',
        'pwdMaxFailure: 2',
        'pwdLockoutDuration: 60',
        '',
        `dn: ${dn}`,
        'changetype: add',
        'objectClass: inetOrgPerson',
        'uid: carl',
        'cn: carl',
        'sn: carl',
        'userPassword: carl-ldap-secret',
        `pwdPolicySubentry: cn=short,ou=policies,${slapd.baseDn}`,
        'pwdAccountLockedTime: 20200101000000Z',
        '',
      ].join('\n'),
    );
    assert.match(await slapd.search(dn, '(objectClass=*)', ['pwdAccountLockedTime']), /pwdAccountLockedTime: 20200101000000Z/);
    const r = await open().verifyPassword({ username: 'carl', password: 'carl-ldap-secret' });
    assert.ok(r.ok, JSON.stringify(r));
  });

  it('required group: a member gets in, a non-member is refused', async () => {
    const ldap = open({ requiredGroup: slapd.groupDn('mailusers') });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
    assert.match(failure(await ldap.verifyPassword({ username: 'bob', password: 'bob-ldap-secret' })), /^refused: not a member of cn=mailusers/);
    const missing = open({ requiredGroup: `cn=nosuch,ou=groups,${slapd.baseDn}` });
    assert.match(failure(await missing.verifyPassword({ username: 'alice', password: ALICE })), /^temporary: .*does not exist/);
  });

  it('filter injection: *, )( and NUL in the user name find nobody; special characters are matched literally', async () => {
    const ldap = open();
    for (const username of ['*', 'a*', '*)(uid=*', 'alice)(|(uid=*', 'alice)(uid=bob', '\\2a', 'alice\0', '\0*']) {
      assert.match(failure(await ldap.verifyPassword({ username, password: ALICE })), /^invalid/, JSON.stringify(username));
      assert.equal(await ldap.hasLogin(username), false, JSON.stringify(username));
      assert.equal(await ldap.lookup(username), null, JSON.stringify(username));
    }
    // A wildcard password is just a wrong password.
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: '*' })), /^invalid: wrong password/);
    const weird = await ldap.verifyPassword({ username: WEIRD.uid, password: WEIRD.password });
    assert.ok(weird.ok, JSON.stringify(weird));
    assert.equal(weird.account.username, WEIRD.uid);
  });

  it('a filter that matches several entries refuses the login (invalid), never picks one', async () => {
    const ldap = open({ userFilter: '(|(uid=%u)(objectClass=inetOrgPerson))' });
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: ALICE })), /^invalid: filter .* matches more than one entry/);
    const two = open({ userFilter: '(|(uid=%u)(uid=bob))' });
    assert.match(failure(await two.verifyPassword({ username: 'alice', password: ALICE })), /^invalid: filter .* matches more than one entry/);
  });

  it('StartTLS on ldap:// with the CA', async () => {
    const ldap = open({ urls: [slapd.url], startTls: true });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
  });

  it('plain ldap:// is refused unless allowed, and then works', async () => {
    assert.throws(() => open({ urls: [slapd.url] }), /LDAP_URLS: .*in the clear.*LDAP_ALLOW_PLAINTEXT/);
    const ldap = open({ urls: [slapd.url], allowPlaintext: true });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
  });

  it('direct bind with a DN template; DN specials in the name are escaped', async () => {
    const ldap = open({ mode: 'direct-bind', bindTemplate: `uid=%u,ou=people,${slapd.baseDn}` });
    const r = await ldap.verifyPassword({ username: 'alice', password: ALICE });
    assert.ok(r.ok, JSON.stringify(r));
    assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: 'nope' })), /^invalid/);
    assert.match(failure(await ldap.verifyPassword({ username: 'alice,ou=people', password: ALICE })), /^invalid/);
    const weird = await ldap.verifyPassword({ username: WEIRD.uid, password: WEIRD.password });
    assert.ok(weird.ok, JSON.stringify(weird));
  });

  it('a certificate for another host name is refused (temporary, never a login)', async () => {
    const wrong = await startSlapd({ mismatchedCertificate: true, certificates: slapd.certificates });
    try {
      const ldaps = open({ urls: [wrong.ldapsUrl] });
      assert.match(failure(await ldaps.verifyPassword({ username: 'alice', password: ALICE })), /^temporary: .*(altnames|Hostname|IP)/i);
      const starttls = open({ urls: [wrong.url], startTls: true });
      assert.match(failure(await starttls.verifyPassword({ username: 'alice', password: ALICE })), /^temporary: .*(altnames|Hostname|IP)/i);
    } finally {
      await wrong.stop();
    }
  });

  it('fails over from a dead first URL, and says temporary when every server is down', async () => {
    const dead = await freePort();
    const ldap = open({ urls: [`ldaps://127.0.0.1:${dead}`, slapd.ldapsUrl] });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
    const none = open({ urls: [`ldaps://127.0.0.1:${dead}`] });
    const started = Date.now();
    assert.match(failure(await none.verifyPassword({ username: 'alice', password: ALICE })), /^temporary: no LDAP server answered: .*ECONNREFUSED/);
    assert.ok(Date.now() - started < 2_000);
  });

  it('fails back to the first URL once it answers again (connections are retired by age)', async () => {
    const first = await startSlapd({ certificates: slapd.certificates });
    try {
      // Each server gave alice its own entryUUID: the mailbox id tells which one answered.
      const uuidOf = async (server: Slapd): Promise<string> =>
        /entryUUID: (\S+)/.exec(await server.search(server.userDn('alice'), '(objectClass=*)', ['entryUUID']))?.[1] ?? '';
      const firstUuid = await uuidOf(first);
      const secondUuid = await uuidOf(slapd);
      assert.notEqual(firstUuid, secondUuid);
      // Direct bind: the two servers' service accounts have different passwords.
      const ldap = open({ urls: [first.ldapsUrl, slapd.ldapsUrl], mode: 'direct-bind', bindTemplate: `uid=%u,ou=people,${slapd.baseDn}`, retryAfterMs: 0, maxConnectionAgeMs: 0 });
      const served = async (): Promise<string> => {
        const r = await ldap.verifyPassword({ username: 'alice', password: ALICE });
        assert.ok(r.ok, JSON.stringify(r));
        return r.account.mailboxId;
      };
      assert.equal(await served(), firstUuid);
      await first.process.stop();
      assert.equal(await served(), secondUuid);
      await first.process.start();
      assert.equal(await served(), firstUuid);
    } finally {
      await first.stop();
    }
  });

  it('a server that accepts and never answers costs a temporary failure within the deadline', async () => {
    const hole = await blackHole();
    try {
      // ldaps: the TLS handshake never completes; plain: the search is never answered.
      for (const overrides of [{ urls: [`ldaps://127.0.0.1:${hole.port}`] }, { urls: [`ldap://127.0.0.1:${hole.port}`], allowPlaintext: true }]) {
        const ldap = open({ ...overrides, timeoutMs: 800, connectTimeoutMs: 400 });
        const started = Date.now();
        const r = await ldap.verifyPassword({ username: 'alice', password: ALICE });
        const took = Date.now() - started;
        assert.match(failure(r), /^temporary: /);
        assert.ok(took >= 350 && took < 2_500, `took ${took} ms`);
      }
      // Failover past the silent server (its connect timeout) to the real one.
      const ldap = open({ urls: [`ldaps://127.0.0.1:${hole.port}`, slapd.ldapsUrl], timeoutMs: 2_000, connectTimeoutMs: 300 });
      assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
    } finally {
      await hole.close();
    }
  });

  it('SIGSTOP on slapd: pooled logins fail temporary within the deadline, and work again after SIGCONT', async () => {
    const ldap = open({ timeoutMs: 700 });
    assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
    await slapd.process.pause();
    try {
      const started = Date.now();
      assert.match(failure(await ldap.verifyPassword({ username: 'alice', password: ALICE })), /^temporary: /);
      const took = Date.now() - started;
      assert.ok(took >= 600 && took < 2_500, `took ${took} ms`);
    } finally {
      slapd.process.signal('SIGCONT');
    }
    const again = await ldap.verifyPassword({ username: 'alice', password: ALICE });
    assert.ok(again.ok, JSON.stringify(again));
  });

  it('a restarted server: pooled connections are replaced without failing a login', async () => {
    const own = await startSlapd({ certificates: slapd.certificates });
    try {
      const ldap = open({ timeoutMs: 5_000 }, own);
      assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
      await own.process.restart();
      const r = await ldap.verifyPassword({ username: 'alice', password: ALICE });
      assert.ok(r.ok, JSON.stringify(r));
    } finally {
      await own.stop();
    }
  });

  it('lookup resolves delivery addresses and login names to the same mailbox; hasLogin', async () => {
    const ldap = open();
    const login = await ldap.verifyPassword({ username: 'alice', password: ALICE });
    assert.ok(login.ok);
    for (const address of ['alice@example.com', 'a.example@example.com', 'ALICE@example.com', 'alice']) {
      const a = await ldap.lookup(address);
      assert.deepEqual(a, login.account, address);
    }
    assert.equal(await ldap.lookup('nobody@example.com'), null);
    assert.equal(await ldap.hasLogin('alice'), true);
    assert.equal(await ldap.hasLogin('nobody'), false);
  });

  it('mailbox id from uid when configured', async () => {
    const ldap = open({ mailboxAttribute: 'uid' });
    const r = await ldap.verifyPassword({ username: 'bob', password: 'bob-ldap-secret' });
    assert.ok(r.ok);
    assert.equal(r.account.mailboxId, 'bob');
  });

  it('with the credential cache a warm login costs no directory round trip', async () => {
    const ldap = open();
    const cache = new CredentialCache(ldap, { ttlMs: 60_000 });
    assert.ok((await cache.verifyPassword({ username: 'alice', password: ALICE })).ok);
    const before = { ...ldap.stats };
    for (let i = 0; i < 20; i++) assert.ok((await cache.verifyPassword({ username: 'alice', password: ALICE })).ok);
    assert.deepEqual(ldap.stats, before);
    // A different password is a different entry: it goes to the directory.
    assert.match(failure(await cache.verifyPassword({ username: 'alice', password: 'other' })), /^invalid/);
    assert.ok(ldap.stats.binds > before.binds);
  });

  it('chains with a password file (AUTH=ldap,passwd-file): ldap users, file users, and no fall-through on a wrong LDAP password', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postern-ldap-chain-'));
    try {
      await writeFile(join(dir, 'passwd'), 'carol:{PLAIN}carol-file-secret\nalice:{PLAIN}alice-file-secret\n');
      const file = await PasswdFileBackend.open({ path: join(dir, 'passwd'), watch: false });
      const chain = new ChainBackend([open(), file]);
      try {
        const a = await chain.verifyPassword({ username: 'alice', password: ALICE });
        assert.ok(a.ok && a.account.backend === 'ldap');
        const c = await chain.verifyPassword({ username: 'carol', password: 'carol-file-secret' });
        assert.ok(c.ok && c.account.backend === 'passwd-file');
        // alice is an LDAP login: her file password does not get her in through the second backend.
        assert.match(failure(await chain.verifyPassword({ username: 'alice', password: 'alice-file-secret' })), /^invalid/);
      } finally {
        await file.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('config: keys are checked and files read, errors name the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postern-ldap-config-'));
    try {
      await writeFile(join(dir, 'pw'), `${slapd.servicePassword}\n`);
      await writeFile(join(dir, 'ca.pem'), slapd.certificates.ca);
      const base = {
        LDAP_URLS: [slapd.ldapsUrl],
        LDAP_MODE: 'search-bind' as const,
        LDAP_BIND_DN: slapd.serviceDn,
        LDAP_BIND_PASSWORD_FILE: join(dir, 'pw'),
        LDAP_BASE_DN: slapd.baseDn,
        LDAP_USER_FILTER: '(uid=%u)',
        LDAP_STARTTLS: false,
        LDAP_CA_FILE: join(dir, 'ca.pem'),
        LDAP_ALLOW_PLAINTEXT: false,
        LDAP_REQUIRED_GROUP_NESTED: false,
        LDAP_MAILBOX_ATTRIBUTE: 'entryUUID',
        LDAP_MAIL_ATTRIBUTES: ['mail'],
        LDAP_CONNECT_TIMEOUT_MS: 1_000,
        LDAP_TIMEOUT_MS: 2_000,
        LDAP_POOL_SIZE: 2,
      };
      const ldap = new LdapBackend(ldapOptionsFromConfig(base));
      backends.push(ldap);
      assert.ok((await ldap.verifyPassword({ username: 'alice', password: ALICE })).ok);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_BIND_PASSWORD: 'x' }), /LDAP_BIND_PASSWORD and LDAP_BIND_PASSWORD_FILE/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_CA_FILE: join(dir, 'missing') }), /LDAP_CA_FILE: cannot read .*ENOENT/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_BASE_DN: undefined }), /LDAP_BASE_DN: required/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_MODE: 'direct-bind' }), /LDAP_BIND_TEMPLATE: required/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_USER_FILTER: '(uid=alice)' }), /LDAP_USER_FILTER: must contain %u/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_USER_FILTER: '(&(uid=%u)(cn=%s))' }), /LDAP_USER_FILTER: unknown placeholder %s/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_URLS: ['http://x'] }), /LDAP_URLS: .*not an ldap/);
      assert.throws(() => ldapOptionsFromConfig({ ...base, LDAP_STARTTLS: true }), /LDAP_STARTTLS: .*already ldaps/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

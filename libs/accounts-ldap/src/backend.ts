/**
 * LdapBackend: accounts in an LDAP directory or Active Directory.
 *
 * search-bind: a service account (or an anonymous bind) finds the user's entry with the filter
 * template, then the password is checked by binding as that entry's DN on a second pool.
 * direct-bind: the password is checked by binding as the templated name (`%u@example.com`,
 * `EXAMPLE\%u`, or a DN), then the entry is read on the same connection.
 * Either way the entry's state attributes, the bind error's AD `data` code and an optional
 * required group decide between success, 'invalid' (unknown user or wrong password), 'refused'
 * (the account may not log in; the reason goes to the log) and 'temporary' (no server answered
 * in time). The mailbox id comes from an attribute that survives renames.
 */
import type { ConnectionOptions } from 'node:tls';
import { AccountsError, type Account, type AccountBackend, type ApopCredentials, type AuthResult, type PasswordCredentials } from '@postern/accounts';
import { ResultCodeError, type Entry } from 'ldapts';
import { escapeDnValue, escapeFilterValue, fillTemplate, loginAttributeOf, templateIsDn } from './escape.js';
import { LdapConnection, Pool, Servers, abortReason, parseLdapUrl, unavailable, type LdapStats, type ServerUrl } from './pool.js';
import { STATE_ATTRIBUTES, adBindFailure, firstValue, allValues, formatGuid, ppolicyLock, refusalFromAttributes } from './state.js';

export type LdapMode = 'search-bind' | 'direct-bind';

export interface LdapBackendOptions {
  /** Tried in order; a server that fails is skipped for `retryAfterMs`. */
  readonly urls: readonly string[];
  readonly mode: LdapMode;
  /** Service account for searches; absent: anonymous searches. */
  readonly bindDn?: string;
  readonly bindPassword?: string;
  readonly baseDn: string;
  /** Filter with `%u`, e.g. `(&(objectClass=user)(sAMAccountName=%u))`. */
  readonly userFilter: string;
  /** direct-bind: `%u@example.com`, `EXAMPLE\%u` or `uid=%u,ou=people,dc=example,dc=com`. */
  readonly bindTemplate?: string;
  readonly startTls?: boolean;
  /** PEM CA certificate(s) the servers' certificates must chain to; absent: the system CAs. */
  readonly ca?: string | Buffer;
  /** Extra TLS settings (tests). Certificate and host name are always verified. */
  readonly tls?: ConnectionOptions;
  /** Allow ldap:// without StartTLS (passwords in the clear). */
  readonly allowPlaintext?: boolean;
  /** DN of a group the user must belong to. */
  readonly requiredGroup?: string;
  /** Nested membership via AD's LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941). */
  readonly requiredGroupNested?: boolean;
  /** Attribute that names the mailbox (objectGUID, entryUUID, uid, ...). */
  readonly mailboxAttribute?: string;
  /** Attributes that hold delivery addresses; `proxyAddresses` values carry an `smtp:` prefix. */
  readonly mailAttributes?: readonly string[];
  readonly connectTimeoutMs?: number;
  /** Deadline for one login or lookup, all round trips included. */
  readonly timeoutMs?: number;
  /** Connections per pool (searches, user binds). */
  readonly poolSize?: number;
  /** A server that failed is tried last for this long. Default 10 000. */
  readonly retryAfterMs?: number;
  /** Pooled connections older than this are closed when returned (failback). Default 300 000. */
  readonly maxConnectionAgeMs?: number;
  /** Default `ldap`. */
  readonly name?: string;
  /** Clock for account expiry (tests); deadlines use the real clock. */
  readonly now?: () => number;
}

interface UserEntry {
  readonly dn: string;
  readonly attributes: Entry;
}

const BINARY_ATTRIBUTES = new Set(['objectguid', 'objectsid']);
const CONTROL = /[\u0000-\u001f\u007f]/;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function fail(failure: 'invalid' | 'refused' | 'temporary', reason: string): AuthResult {
  return { ok: false, failure, reason };
}

function assertOption(ok: boolean, text: string): void {
  if (!ok) throw new RangeError(text);
}

/** Checks the combination of options (messages name the config keys); returns the parsed URLs. */
export function checkLdapOptions(options: LdapBackendOptions): ServerUrl[] {
  const servers = options.urls.map((u) => {
    try {
      return parseLdapUrl(u);
    } catch (e) {
      throw new RangeError(`LDAP_URLS: ${message(e)}`);
    }
  });
  assertOption(servers.length > 0, 'LDAP_URLS: at least one URL is needed');
  const startTls = options.startTls ?? false;
  for (const s of servers) {
    assertOption(!(s.secure && startTls), `LDAP_STARTTLS: ${s.url} is already ldaps://; use ldap:// URLs with StartTLS`);
    assertOption(s.secure || startTls || options.allowPlaintext === true, `LDAP_URLS: ${s.url} would send passwords in the clear; use ldaps://, set LDAP_STARTTLS=true, or LDAP_ALLOW_PLAINTEXT=true`);
  }
  assertOption(options.userFilter.includes('%u'), 'LDAP_USER_FILTER: must contain %u');
  assertOption(options.userFilter.trim().startsWith('(') && options.userFilter.trim().endsWith(')'), 'LDAP_USER_FILTER: must be a parenthesised filter');
  const checkTemplate = (key: string, template: string, escape: (v: string) => string): void => {
    try {
      fillTemplate(template, 'x', escape);
    } catch (e) {
      throw new RangeError(`${key}: ${message(e)}`);
    }
  };
  checkTemplate('LDAP_USER_FILTER', options.userFilter, escapeFilterValue);
  if (options.bindTemplate !== undefined) checkTemplate('LDAP_BIND_TEMPLATE', options.bindTemplate, escapeDnValue);
  if (options.mode === 'direct-bind') {
    assertOption(options.bindTemplate?.includes('%u') === true, 'LDAP_BIND_TEMPLATE: direct-bind needs a template with %u');
  }
  assertOption((options.bindDn === undefined) === (options.bindPassword === undefined), 'LDAP_BIND_DN and LDAP_BIND_PASSWORD (or LDAP_BIND_PASSWORD_FILE) go together');
  return servers;
}

export class LdapBackend implements AccountBackend {
  readonly name: string;
  readonly stats: LdapStats = { connects: 0, binds: 0, searches: 0 };
  private readonly options: LdapBackendOptions;
  private readonly servers: Servers;
  private readonly searchPool: Pool;
  private readonly bindPool: Pool;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly mailboxAttribute: string;
  private readonly mailAttributes: readonly string[];
  private readonly loginAttribute: string | null;
  private readonly attributes: string[];
  private readonly binaryAttributes: string[];
  private readonly bindTemplateIsDn: boolean;

  constructor(options: LdapBackendOptions) {
    const servers = checkLdapOptions(options);
    const startTls = options.startTls ?? false;
    this.options = options;
    this.name = options.name ?? 'ldap';
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.mailboxAttribute = options.mailboxAttribute ?? 'entryUUID';
    this.mailAttributes = options.mailAttributes ?? ['mail'];
    this.loginAttribute = loginAttributeOf(options.userFilter);
    this.bindTemplateIsDn = options.bindTemplate !== undefined && templateIsDn(options.bindTemplate);
    this.attributes = [...new Set([this.mailboxAttribute, ...(this.loginAttribute ? [this.loginAttribute] : []), ...STATE_ATTRIBUTES])];
    this.binaryAttributes = this.attributes.filter((a) => BINARY_ATTRIBUTES.has(a.toLowerCase()));
    this.servers = new Servers({
      servers,
      startTls,
      tls: { ...options.tls, ...(options.ca !== undefined ? { ca: options.ca } : {}), rejectUnauthorized: true },
      connectTimeoutMs: options.connectTimeoutMs ?? 2_000,
      timeoutMs: this.timeoutMs,
      retryAfterMs: options.retryAfterMs ?? 10_000,
      stats: this.stats,
    });
    const poolSize = options.poolSize ?? 8;
    const maxAgeMs = options.maxConnectionAgeMs ?? 300_000;
    const bindDn = options.bindDn;
    const bindPassword = options.bindPassword;
    this.searchPool = new Pool(this.servers, {
      name: 'LDAP search',
      max: poolSize,
      maxAgeMs,
      prepare:
        bindDn !== undefined && bindPassword !== undefined
          ? async (c) => {
              try {
                await c.bind(bindDn, bindPassword);
              } catch (e) {
                throw unavailable(`service account bind as ${bindDn} on ${c.server.url} failed: ${message(e)}`, e);
              }
            }
          : undefined,
    });
    this.bindPool = new Pool(this.servers, { name: 'LDAP bind', max: poolSize, maxAgeMs });
  }

  supportsApop(): boolean {
    return false;
  }

  async verifyApop(_credentials: ApopCredentials): Promise<AuthResult> {
    return fail('invalid', 'APOP needs the plaintext password, which a directory does not reveal');
  }

  async verifyPassword(credentials: PasswordCredentials, signal?: AbortSignal): Promise<AuthResult> {
    const { username, password } = credentials;
    // An empty password is an anonymous ("unauthenticated") bind, which many servers accept.
    if (username.length === 0 || password.length === 0) return fail('invalid', 'empty username or password');
    if (password.includes('\0')) return fail('invalid', 'password contains NUL');
    if (CONTROL.test(username)) return fail('invalid', 'username contains a control character');
    const deadline = Date.now() + this.timeoutMs;
    try {
      return this.options.mode === 'direct-bind'
        ? await this.directBind(username, password, deadline, signal)
        : await this.searchBind(username, password, deadline, signal);
    } catch (e) {
      if (signal?.aborted) throw abortReason(signal);
      return fail('temporary', message(e));
    }
  }

  async hasLogin(username: string, signal?: AbortSignal): Promise<boolean> {
    if (username.length === 0 || CONTROL.test(username)) return false;
    const entry = await this.searchPool.use((c) => this.findUser(c, username), Date.now() + this.timeoutMs, signal, 'user search');
    return entry !== null;
  }

  /** The account for a delivery address (mail attributes) or a login name (the user filter). */
  async lookup(address: string, signal?: AbortSignal): Promise<Account | null> {
    if (address.length === 0 || CONTROL.test(address)) return null;
    const value = escapeFilterValue(address);
    const byMail = this.mailAttributes.map((a) => (a.toLowerCase() === 'proxyaddresses' ? `(${a}=smtp:${value})` : `(${a}=${value})`));
    const filter = `(|${this.userFilterFor(address)}${byMail.join('')})`;
    const entry = await this.searchPool.use((c) => this.searchOne(c, filter), Date.now() + this.timeoutMs, signal, 'address lookup');
    if (entry === null) return null;
    return this.accountOf(entry, address);
  }

  async close(): Promise<void> {
    await Promise.all([this.searchPool.close(), this.bindPool.close()]);
  }

  private userFilterFor(username: string): string {
    return fillTemplate(this.options.userFilter, username, escapeFilterValue);
  }

  private findUser(c: LdapConnection, username: string): Promise<UserEntry | null> {
    return this.searchOne(c, this.userFilterFor(username));
  }

  private async searchOne(c: LdapConnection, filter: string, base = this.options.baseDn, scope: 'sub' | 'base' = 'sub'): Promise<UserEntry | null> {
    const ambiguous = (): AccountsError => new AccountsError('unavailable', `filter ${filter} matches more than one entry`, { temporary: false });
    let result: Awaited<ReturnType<LdapConnection['search']>>;
    try {
      result = await c.search(base, {
        scope,
        filter,
        attributes: this.attributes,
        explicitBufferAttributes: this.binaryAttributes,
        sizeLimit: 2,
      });
    } catch (e) {
      // sizeLimitExceeded: three or more entries match.
      if (e instanceof ResultCodeError && e.code === 4) throw ambiguous();
      throw e;
    }
    // Referrals (AD's DomainDnsZones and friends) are not followed.
    if (result.searchEntries.length > 1) throw ambiguous();
    const entry = result.searchEntries[0];
    return entry === undefined ? null : { dn: entry.dn, attributes: entry };
  }

  private async searchBind(username: string, password: string, deadline: number, signal: AbortSignal | undefined): Promise<AuthResult> {
    let entry: UserEntry | null;
    try {
      entry = await this.searchPool.use((c) => this.findUser(c, username), deadline, signal, 'user search');
    } catch (e) {
      if (e instanceof AccountsError && !e.temporary) return fail('invalid', message(e));
      throw e;
    }
    if (entry === null) return fail('invalid', 'unknown user');
    const found = entry;
    const bound = await this.bindPool.use((c) => this.bindAs(c, found.dn, password, found), deadline, signal, 'user bind');
    if (bound !== null) return bound;
    // The service account reads the group: a user may not be allowed to.
    const group = await this.searchPool.use((c) => this.checkGroup(c, found.dn), deadline, signal, 'group check');
    return group ?? this.accepted(found, username);
  }

  private async directBind(username: string, password: string, deadline: number, signal: AbortSignal | undefined): Promise<AuthResult> {
    const template = this.options.bindTemplate as string;
    if (!this.bindTemplateIsDn && template !== '%u' && (username.includes('\\') || username.includes('@'))) {
      return fail('invalid', 'username contains "\\" or "@", which the bind template already supplies');
    }
    const name = fillTemplate(template, username, this.bindTemplateIsDn ? escapeDnValue : (v) => v);
    return this.bindPool.use(
      async (c) => {
        const failure = await this.bindAs(c, name, password, null);
        if (failure !== null) return failure;
        // A DN template names the entry: read it (users may read themselves but not search the tree).
        const entry = this.bindTemplateIsDn ? await this.searchOne(c, this.userFilterFor(username), name, 'base') : await this.findUser(c, username);
        if (entry === null) throw unavailable(`bound as ${name} but ${this.options.userFilter} finds no entry for it under ${this.options.baseDn}`);
        const group = await this.checkGroup(c, entry.dn);
        return group ?? this.accepted(entry, username);
      },
      deadline,
      signal,
      'user bind',
    );
  }

  /** Null when the bind succeeded; otherwise the classified failure. */
  private async bindAs(c: LdapConnection, name: string, password: string, entry: UserEntry | null): Promise<AuthResult | null> {
    try {
      await c.bind(name, password);
      return null;
    } catch (e) {
      if (!(e instanceof ResultCodeError)) throw e;
      if (e.code === 49) {
        const ad = adBindFailure(e.message);
        if (ad !== null) return fail(ad.refused ? 'refused' : 'invalid', ad.reason);
        const state = entry === null ? null : (refusalFromAttributes(entry.attributes, this.now()) ?? ppolicyLock(entry.attributes, false));
        return state !== null ? fail('refused', state) : fail('invalid', 'wrong password');
      }
      // 48 inappropriateAuthentication, 50 insufficientAccessRights, 53 unwillingToPerform: the directory says no.
      if (e.code === 48 || e.code === 50 || e.code === 53) return fail('refused', `bind refused: ${e.message}`);
      throw unavailable(`bind failed: ${e.message}`, e);
    }
  }

  /** Null when no group is required or the user is in it. */
  private async checkGroup(c: LdapConnection, dn: string): Promise<AuthResult | null> {
    const group = this.options.requiredGroup;
    if (group === undefined) return null;
    let found: boolean;
    if (this.options.requiredGroupNested === true) {
      const r = await c.search(dn, { scope: 'base', filter: `(memberOf:1.2.840.113556.1.4.1941:=${escapeFilterValue(group)})`, attributes: ['1.1'] });
      found = r.searchEntries.length > 0;
    } else {
      const member = escapeFilterValue(dn);
      try {
        const r = await c.search(group, { scope: 'base', filter: `(|(member=${member})(uniqueMember=${member}))`, attributes: ['1.1'] });
        found = r.searchEntries.length > 0;
      } catch (e) {
        if (e instanceof ResultCodeError && e.code === 32) throw unavailable(`LDAP_REQUIRED_GROUP ${group} does not exist`, e);
        throw e;
      }
    }
    return found ? null : fail('refused', `not a member of ${group}`);
  }

  private accepted(entry: UserEntry, username: string): AuthResult {
    const refusal = refusalFromAttributes(entry.attributes, this.now()) ?? ppolicyLock(entry.attributes, true);
    if (refusal !== null) return fail('refused', refusal);
    const account = this.accountOf(entry, username);
    if (account === null) return fail('refused', `entry ${entry.dn} has no ${this.mailboxAttribute}`);
    return { ok: true, account };
  }

  private accountOf(entry: UserEntry, typed: string): Account | null {
    const raw = firstValue(entry.attributes, this.mailboxAttribute);
    if (raw === undefined || raw.length === 0) return null;
    const mailboxId = Buffer.isBuffer(raw)
      ? this.mailboxAttribute.toLowerCase() === 'objectguid'
        ? formatGuid(raw)
        : raw.toString('hex')
      : raw;
    const login = this.loginAttribute ? allValues(entry.attributes, this.loginAttribute)[0] : undefined;
    const username = typeof login === 'string' && login.length > 0 ? login : typed;
    return { username, mailboxId, backend: this.name };
  }
}

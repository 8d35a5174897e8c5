/** The public configuration keys (LDAP_*) turned into LdapBackendOptions; errors name the key. */
import { readFileSync } from 'node:fs';
import { checkLdapOptions, type LdapBackendOptions, type LdapMode } from './backend.js';

/** The LDAP_* settings as the service's config schema parses them. */
export interface LdapConfig {
  readonly LDAP_URLS: readonly string[];
  readonly LDAP_MODE: LdapMode;
  readonly LDAP_BIND_DN?: string | undefined;
  readonly LDAP_BIND_PASSWORD?: string | undefined;
  readonly LDAP_BIND_PASSWORD_FILE?: string | undefined;
  readonly LDAP_BASE_DN?: string | undefined;
  readonly LDAP_USER_FILTER: string;
  readonly LDAP_BIND_TEMPLATE?: string | undefined;
  readonly LDAP_STARTTLS: boolean;
  readonly LDAP_CA_FILE?: string | undefined;
  readonly LDAP_ALLOW_PLAINTEXT: boolean;
  readonly LDAP_REQUIRED_GROUP?: string | undefined;
  readonly LDAP_REQUIRED_GROUP_NESTED: boolean;
  readonly LDAP_MAILBOX_ATTRIBUTE: string;
  readonly LDAP_MAIL_ATTRIBUTES: readonly string[];
  readonly LDAP_CONNECT_TIMEOUT_MS: number;
  readonly LDAP_TIMEOUT_MS: number;
  readonly LDAP_POOL_SIZE: number;
}

function readKeyFile(key: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new RangeError(`${key}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Validates the combination and reads LDAP_CA_FILE and LDAP_BIND_PASSWORD_FILE; errors start with the key. */
export function ldapOptionsFromConfig(c: LdapConfig): LdapBackendOptions {
  if (c.LDAP_URLS.length === 0) throw new RangeError('LDAP_URLS: required when AUTH includes ldap');
  if (!c.LDAP_BASE_DN) throw new RangeError('LDAP_BASE_DN: required when AUTH includes ldap');
  if (c.LDAP_BIND_PASSWORD !== undefined && c.LDAP_BIND_PASSWORD_FILE !== undefined) {
    throw new RangeError('LDAP_BIND_PASSWORD and LDAP_BIND_PASSWORD_FILE: set one, not both');
  }
  // A trailing newline in the file is not part of the password.
  const password =
    c.LDAP_BIND_PASSWORD_FILE !== undefined
      ? readKeyFile('LDAP_BIND_PASSWORD_FILE', c.LDAP_BIND_PASSWORD_FILE).replace(/\r?\n$/, '')
      : c.LDAP_BIND_PASSWORD;
  if (c.LDAP_BIND_DN !== undefined && (password === undefined || password === '')) {
    throw new RangeError('LDAP_BIND_PASSWORD: required (or LDAP_BIND_PASSWORD_FILE) when LDAP_BIND_DN is set');
  }
  if (c.LDAP_BIND_DN === undefined && password !== undefined) throw new RangeError('LDAP_BIND_DN: required when a bind password is set');
  if (c.LDAP_MODE === 'direct-bind' && !c.LDAP_BIND_TEMPLATE?.includes('%u')) {
    throw new RangeError('LDAP_BIND_TEMPLATE: required with %u when LDAP_MODE=direct-bind');
  }
  const options: LdapBackendOptions = {
    urls: c.LDAP_URLS,
    mode: c.LDAP_MODE,
    ...(c.LDAP_BIND_DN !== undefined && password !== undefined ? { bindDn: c.LDAP_BIND_DN, bindPassword: password } : {}),
    baseDn: c.LDAP_BASE_DN,
    userFilter: c.LDAP_USER_FILTER,
    ...(c.LDAP_BIND_TEMPLATE !== undefined ? { bindTemplate: c.LDAP_BIND_TEMPLATE } : {}),
    startTls: c.LDAP_STARTTLS,
    ...(c.LDAP_CA_FILE !== undefined ? { ca: readKeyFile('LDAP_CA_FILE', c.LDAP_CA_FILE) } : {}),
    allowPlaintext: c.LDAP_ALLOW_PLAINTEXT,
    ...(c.LDAP_REQUIRED_GROUP !== undefined ? { requiredGroup: c.LDAP_REQUIRED_GROUP } : {}),
    requiredGroupNested: c.LDAP_REQUIRED_GROUP_NESTED,
    mailboxAttribute: c.LDAP_MAILBOX_ATTRIBUTE,
    mailAttributes: c.LDAP_MAIL_ATTRIBUTES,
    connectTimeoutMs: c.LDAP_CONNECT_TIMEOUT_MS,
    timeoutMs: c.LDAP_TIMEOUT_MS,
    poolSize: c.LDAP_POOL_SIZE,
  };
  checkLdapOptions(options);
  return options;
}

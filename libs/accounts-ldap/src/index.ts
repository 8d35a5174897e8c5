export { LdapBackend, checkLdapOptions, type LdapBackendOptions, type LdapMode } from './backend.js';
export { escapeDnValue, escapeFilterValue, fillTemplate, loginAttributeOf, templateIsDn } from './escape.js';
export { adBindFailure, fileTimeToMs, formatGuid, ppolicyLock, PPOLICY_PERMANENT_LOCK, refusalFromAttributes, UAC_ACCOUNTDISABLE, UAC_LOCKOUT, UAC_PASSWORD_EXPIRED } from './state.js';
export { parseLdapUrl, type LdapStats, type ServerUrl } from './pool.js';
export { ldapOptionsFromConfig, type LdapConfig } from './config.js';

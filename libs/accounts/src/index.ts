export type {
  Account,
  AuthFailure,
  AuthResult,
  PasswordCredentials,
  ApopCredentials,
  AccountBackend,
  Quota,
} from './types.js';
export { isQuotaRuleField, parseQuotaRules } from './quota-rule.js';
export { AccountsError, type AccountsErrorCode } from './errors.js';
export {
  DEFAULT_SCHEME,
  HASH_SCHEMES,
  VERIFY_SCHEMES,
  costProfile,
  declaredScheme,
  defaultDummyHash,
  dummyHashLike,
  hashPassword,
  isExpensive,
  parsePasswordHash,
  plaintextOf,
  verifyPasswordHash,
  type HashOptions,
  type HashScheme,
  type ParsedHash,
  type ResolvedScheme,
} from './schemes.js';
export { shaCrypt, SHA_CRYPT_ROUNDS_DEFAULT, SHA_CRYPT_ROUNDS_MAX, SHA_CRYPT_ROUNDS_MIN, type ShaCryptVariant } from './sha-crypt.js';
export { BCRYPT_COST_DEFAULT, BCRYPT_MAX_PASSWORD_BYTES } from './bcrypt.js';
export { ARGON2ID_DEFAULTS, ARGON2I_DEFAULTS, type Argon2Params } from './argon2.js';
export { inlineVerifier, type PasswordVerifier } from './verifier.js';
export { VerifierPool, verifyWorkerLocation, type VerifierPoolOptions, type VerifierPoolStats, type WorkerLocation } from './verify-pool.js';
export {
  PasswdFileBackend,
  type PasswdFileBackendOptions,
  type PasswdFileReload,
  type PasswdFileWarning,
} from './passwd-file.js';
export { parsePasswdLine, usernameProblem, validateUsername, type ParsedLine, type PasswdLine } from './passwd-format.js';
export {
  PasswdFileDocument,
  readPasswdFileDocument,
  updatePasswdFile,
  writeFileAtomic,
  type PasswdFileUser,
  type UpdateOptions,
  type WriteAtomicOptions,
} from './passwd-file-edit.js';
export { CredentialCache, type CredentialCacheOptions, type CredentialCacheStats, type SharedCredentialStore } from './credential-cache.js';
export { ChainBackend, type ChainBackendOptions } from './chain.js';
export { PamBackend, pamOptionsFromConfig, type PamBackendOptions, type PamConfigKeys } from './pam.js';

export type {
  Account,
  AuthFailure,
  AuthResult,
  PasswordCredentials,
  ApopCredentials,
  AccountBackend,
} from './types.js';

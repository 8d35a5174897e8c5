import { abortReason } from './errors.js';
import { verifyPasswordHash } from './schemes.js';

/** Checks a password against a stored `{SCHEME}hash`. */
export interface PasswordVerifier {
  /**
   * Resolves true on a match, false otherwise. Rejects with the signal's reason when aborted,
   * and with an AccountsError (`busy`, `closed`, `unavailable`, `malformed-hash`, ...) when it
   * cannot tell.
   */
  verify(password: string, storedHash: string, signal?: AbortSignal): Promise<boolean>;
  close?(): Promise<void>;
}

/** Verifies in the calling thread. For the CLI and tests; servers use a VerifierPool. */
export const inlineVerifier: PasswordVerifier = {
  async verify(password, storedHash, signal) {
    if (signal?.aborted) throw abortReason(signal);
    return verifyPasswordHash(password, storedHash);
  },
};

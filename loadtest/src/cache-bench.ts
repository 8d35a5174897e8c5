// The verified-credential cache when it is full: every login of a new name evicts the least
// recently used entry. Fills a cache of --size entries with distinct logins, then times --logins
// more distinct logins (a burst of new names, as password spraying makes) and prints the cost per
// login. The backend answers at once from memory, so only the cache is timed.
//
// Usage: npm run bench:cache -w loadtest -- [--size 100000] [--logins 200000]

import { parseArgs } from 'node:util';
import { CredentialCache, type AccountBackend, type AuthResult } from '@postern/accounts';
import { intOption, isMain, runCli } from './cli-util.js';

/** Accepts every password at once: the cache, not the backend, is what is timed. */
const instant: AccountBackend = {
  name: 'memory',
  verifyPassword: async ({ username }): Promise<AuthResult> => ({ ok: true, account: { username, mailboxId: username, backend: 'memory' } }),
  supportsApop: () => false,
  verifyApop: async () => ({ ok: false, failure: 'invalid', reason: 'no APOP' }),
  lookup: async () => null,
};

export interface CacheBenchResult {
  size: number;
  logins: number;
  /** Microseconds per login into the full cache. */
  microsPerLogin: number;
}

export async function cacheBench(size: number, logins: number): Promise<CacheBenchResult> {
  const cache = new CredentialCache(instant, { maxEntries: size });
  for (let i = 0; i < size; i++) await cache.verifyPassword({ username: `fill${i}`, password: 'p' });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < logins; i++) await cache.verifyPassword({ username: `new${i}`, password: 'p' });
  const micros = Number(process.hrtime.bigint() - t0) / 1e3;
  if (cache.stats.entries > size) throw new Error(`the cache holds ${cache.stats.entries} entries, more than ${size}`);
  return { size, logins, microsPerLogin: micros / logins };
}

const USAGE = 'Usage: npm run bench:cache -w loadtest -- [--size 100000] [--logins 200000]\n';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { size: { type: 'string' }, logins: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  const r = await cacheBench(intOption('--size', values.size, 100_000, 1), intOption('--logins', values.logins, 200_000, 1));
  process.stdout.write(`${r.logins} new logins into a full cache of ${r.size}: ${r.microsPerLogin.toFixed(1)} µs per login\n`);
}

if (isMain(import.meta.url)) runCli(main, USAGE);

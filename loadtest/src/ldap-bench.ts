// Logins per second through the LDAP account backend against a private slapd over LDAPS on
// pooled connections, with and without the credential cache: p50/p99 login latency and the
// directory round trips (binds, searches, connects) per login, counted at the client.
//
//   npx tsx --conditions=development loadtest/src/ldap-bench.ts [--users 200] [--logins 5000]
//       [--concurrency 1,16] [--pool 8]
import { parseArgs } from 'node:util';
import { CredentialCache, type AccountBackend } from '@postern/accounts';
import { LdapBackend } from '@postern/accounts-ldap';
import { startSlapd, type SlapdUser } from '@postern/testkit';
import { intOption, isMain, runCli, UsageError } from './cli-util.js';

export const LDAP_BENCH_USAGE = `usage: ldap-bench [--users N] [--logins N] [--concurrency C[,C...]] [--pool N]
  --users        directory users to log in as, round robin (default 200)
  --logins       logins per run (default 5000)
  --concurrency  logins in flight, one run each (default 1,16)
  --pool         connections per pool (search, bind) (default 8)
`;

export interface LdapBenchRow {
  readonly mode: 'no cache' | 'warm cache';
  readonly concurrency: number;
  readonly logins: number;
  readonly seconds: number;
  readonly loginsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly bindsPerLogin: number;
  readonly searchesPerLogin: number;
  readonly connects: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function run(
  backend: AccountBackend,
  ldap: LdapBackend,
  users: readonly SlapdUser[],
  logins: number,
  concurrency: number,
  mode: LdapBenchRow['mode'],
): Promise<LdapBenchRow> {
  const before = { ...ldap.stats };
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= logins) return;
      const user = users[i % users.length] as SlapdUser;
      const t = process.hrtime.bigint();
      const r = await backend.verifyPassword({ username: user.uid, password: user.password });
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (!r.ok) throw new Error(`login ${user.uid} failed: ${r.failure}: ${r.reason}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return {
    mode,
    concurrency,
    logins,
    seconds,
    loginsPerSecond: logins / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    bindsPerLogin: (ldap.stats.binds - before.binds) / logins,
    searchesPerLogin: (ldap.stats.searches - before.searches) / logins,
    connects: ldap.stats.connects - before.connects,
  };
}

export async function ldapBench(options: { users: number; logins: number; concurrency: readonly number[]; pool: number }): Promise<LdapBenchRow[]> {
  const users: SlapdUser[] = Array.from({ length: options.users }, (_, i) => ({ uid: `user${i}`, password: `secret-${i}` }));
  const slapd = await startSlapd({ users, groups: [] });
  const ldap = new LdapBackend({
    urls: [slapd.ldapsUrl],
    mode: 'search-bind',
    bindDn: slapd.serviceDn,
    bindPassword: slapd.servicePassword,
    baseDn: slapd.baseDn,
    userFilter: '(&(objectClass=inetOrgPerson)(uid=%u))',
    ca: slapd.certificates.ca,
    poolSize: options.pool,
  });
  const rows: LdapBenchRow[] = [];
  try {
    // Open the pools and warm slapd's caches once; not measured.
    await run(ldap, ldap, users, Math.min(users.length, options.logins), options.pool, 'no cache');
    for (const c of options.concurrency) rows.push(await run(ldap, ldap, users, options.logins, c, 'no cache'));
    const cache = new CredentialCache(ldap, { ttlMs: 3_600_000, maxEntries: users.length * 2 });
    await run(cache, ldap, users, users.length, options.pool, 'warm cache');
    for (const c of options.concurrency) rows.push(await run(cache, ldap, users, options.logins, c, 'warm cache'));
  } finally {
    await ldap.close();
    await slapd.stop();
  }
  return rows;
}

export function formatRows(rows: readonly LdapBenchRow[]): string {
  const head = ['mode', 'conc', 'logins', 'logins/s', 'p50 ms', 'p99 ms', 'binds/login', 'searches/login', 'new conns'];
  const lines = rows.map((r) => [
    r.mode,
    String(r.concurrency),
    String(r.logins),
    r.loginsPerSecond.toFixed(0),
    r.p50Ms.toFixed(3),
    r.p99Ms.toFixed(3),
    r.bindsPerLogin.toFixed(2),
    r.searchesPerLogin.toFixed(2),
    String(r.connects),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [fmt(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { users: { type: 'string' }, logins: { type: 'string' }, concurrency: { type: 'string' }, pool: { type: 'string' } },
  });
  const concurrency = (values.concurrency ?? '1,16').split(',').map((c) => intOption('concurrency', c.trim(), 1, 1));
  if (concurrency.length === 0) throw new UsageError('--concurrency needs at least one number');
  const rows = await ldapBench({
    users: intOption('users', values.users, 200, 1),
    logins: intOption('logins', values.logins, 5_000, 1),
    concurrency,
    pool: intOption('pool', values.pool, 8, 1),
  });
  process.stdout.write(`LDAP logins through LdapBackend, slapd over LDAPS on 127.0.0.1, search-bind, pooled\n${formatRows(rows)}\n`);
}

if (isMain(import.meta.url)) runCli(main, LDAP_BENCH_USAGE);

// POP3 load generator CLI. See USAGE below and README.md.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError, intOption, isLoopbackHost, isMain, numberOption, runCli } from './cli-util.js';
import {
  formatIdle,
  formatSessions,
  readAccounts,
  runIdle,
  runSessions,
  templateAccounts,
  type Account,
  type ConnectionOptions,
} from './generator.js';

export const USAGE = `Usage: tsx loadtest/src/main.ts --port N (--users-file F | --user-template T --password P --users N) [options]

Target
  --host H             server address (default 127.0.0.1; loopback only unless --allow-remote)
  --port N             server port
  --tls                implicit TLS (POP3S)
  --starttls           STLS after the greeting
  --ca FILE            verify the server certificate against this CA (default: not verified)
  --timeout MS         per-reply timeout (default 30000)
  --pipelining         send commands without waiting for replies (RFC 2449 PIPELINING)

Accounts
  --users-file F       user:password lines, or a passwd-file with {PLAIN} passwords
  --user-template T    user names, %d (or %04d) = 1..N (default user%d)
  --password P         password for the template accounts (%d allowed)
  --users N            number of template accounts

Session workload (the default): connect, USER/PASS, STAT, UIDL, RETR each, QUIT
  --concurrency C      concurrent sessions (default 16); needs at least C accounts
  --duration S         start no new session after S seconds (default 10 unless --sessions)
  --sessions N         stop after N sessions
  --retr all|none      RETR every message (default) or none
  --dele               DELE every message before QUIT (destroys the data set)
  --warmup             first run one untimed session per account (fills caches on both sides)

Idle workload
  --idle N             hold N logged-in sessions, each on its own account, and report server
                       memory before and after (logins run --concurrency at a time)
  --settle S           wait S seconds before measuring idle memory (default 1)

Reporting
  --server-pid PID     report CPU and memory of this process and all its descendants
  --json               print the result as JSON
`;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      tls: { type: 'boolean' },
      starttls: { type: 'boolean' },
      ca: { type: 'string' },
      timeout: { type: 'string' },
      pipelining: { type: 'boolean' },
      'users-file': { type: 'string' },
      'user-template': { type: 'string' },
      password: { type: 'string' },
      users: { type: 'string' },
      concurrency: { type: 'string' },
      duration: { type: 'string' },
      sessions: { type: 'string' },
      retr: { type: 'string' },
      dele: { type: 'boolean' },
      warmup: { type: 'boolean' },
      idle: { type: 'string' },
      settle: { type: 'string' },
      'server-pid': { type: 'string' },
      json: { type: 'boolean' },
      'allow-remote': { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const v = parse(argv);
  if (v.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const host = v.host ?? '127.0.0.1';
  if (!isLoopbackHost(host) && v['allow-remote'] !== true) {
    throw new UsageError(`--host ${host} is not a loopback address (pass --allow-remote to target it)`);
  }
  if (v.port === undefined) throw new UsageError('--port is required');
  if (v.tls === true && v.starttls === true) throw new UsageError('--tls and --starttls exclude each other');
  const retr = v.retr ?? 'all';
  if (retr !== 'all' && retr !== 'none') throw new UsageError('--retr is all or none');

  let accounts: Account[];
  if (v['users-file'] !== undefined) {
    accounts = readAccounts(v['users-file']);
  } else {
    if (v.users === undefined || v.password === undefined) {
      throw new UsageError('give --users-file, or --users and --password (with --user-template)');
    }
    accounts = templateAccounts(v['user-template'] ?? 'user%d', v.password, intOption('users', v.users, 0, 1));
  }

  const conn: ConnectionOptions = {
    host,
    port: intOption('port', v.port, 0, 1),
    tls: v.tls === true ? 'implicit' : v.starttls === true ? 'starttls' : 'none',
    tlsOptions: v.ca === undefined ? undefined : { ca: readFileSync(v.ca), rejectUnauthorized: true },
    timeoutMs: intOption('timeout', v.timeout, 30_000, 1),
    pipelining: v.pipelining === true,
  };
  const concurrency = intOption('concurrency', v.concurrency, 16, 1);
  const serverPid = v['server-pid'] === undefined ? undefined : intOption('server-pid', v['server-pid'], 0, 1);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort(new Error('interrupted')));

  if (v.idle !== undefined) {
    const result = await runIdle({
      ...conn,
      accounts,
      idle: intOption('idle', v.idle, 0, 1),
      concurrency,
      serverPid,
      settleMs: numberOption('settle', v.settle, 1) * 1000,
      signal: controller.signal,
    });
    process.stdout.write(v.json === true ? JSON.stringify(result, null, 2) + '\n' : formatIdle(result));
    return result.held === result.requested ? 0 : 1;
  }

  const sessions = v.sessions === undefined ? undefined : intOption('sessions', v.sessions, 0, 1);
  const durationS = v.duration === undefined ? (sessions === undefined ? 10 : undefined) : numberOption('duration', v.duration, 10);
  if (v.warmup === true) {
    const warm = await runSessions({
      ...conn,
      accounts,
      concurrency: Math.min(concurrency, accounts.length),
      sessions: accounts.length,
      retr,
      signal: controller.signal,
    });
    if (warm.sessionsFailed > 0) {
      process.stderr.write(`warm-up: ${warm.sessionsFailed} of ${accounts.length} sessions failed\n`);
    }
  }
  const result = await runSessions({
    ...conn,
    accounts,
    concurrency,
    durationMs: durationS === undefined ? undefined : durationS * 1000,
    sessions,
    retr,
    dele: v.dele === true,
    serverPid,
    signal: controller.signal,
  });
  process.stdout.write(v.json === true ? JSON.stringify(result, null, 2) + '\n' : formatSessions(result));
  return result.sessionsFailed === 0 ? 0 : 1;
}

if (isMain(import.meta.url)) runCli(main, USAGE);

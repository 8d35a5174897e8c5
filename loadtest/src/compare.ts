// Side-by-side benchmark: Dovecot and our server on the same generated data, the same workloads,
// and a table of both with the ratios ours/dovecot.
//
// For each server: start it fresh, warm up (one untimed session per account), run the session
// workload (C concurrent sessions for D seconds), stop it; start it again and hold N idle
// sessions to measure memory, stop it. Messages are fetched but never deleted, so the data set
// serves both servers unchanged (Dovecot, which runs first, moves messages from new/ to cur/ as any
// Maildir reader may).
//
// Our server is started with `sh -c "$CMD"` (its own process group) and this environment:
//   POP3_LISTEN=127.0.0.1:<port>   where to listen (plain POP3)
//   MAILDIR=<root>/%u/Maildir       the Maildir of user %u
//   PASSWD_FILE=<file>              Dovecot passwd-file, user:{PLAIN}password lines
//   DATA_DIR=<dir>                  a private, empty-at-first directory for its own state
//   PLAINTEXT_AUTH=always           allow USER/PASS without TLS
//   LOG_LEVEL=warn
// It runs in the directory the command was started from (npm's INIT_CWD), must greet on that port
// within 60 s, and is measured over the process tree of that shell; stdout and stderr go to
// <DATA_DIR>/server.log.
//
// Usage: npm run bench:compare -w loadtest -- [--ours 'exec node services/server/dist/main.js'] [options]

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, intOption, isMain, numberOption, runCli } from './cli-util.js';
import { startDovecot } from './dovecot.js';
import {
  formatIdle,
  formatSessions,
  readAccounts,
  runIdle,
  runSessions,
  type Account,
  type IdleResult,
  type SessionResult,
} from './generator.js';
import { DEFAULT_SIZES, generateMail } from './mailgen.js';
import { exited, freePort, stopProcess, waitForGreeting } from './server-process.js';

export interface CompareOptions {
  users: number;
  messages: number;
  sizes: string;
  /** Generate CRLF files (as our own LMTP delivery stores them) instead of LF. */
  crlf: boolean;
  seed: number;
  concurrency: number;
  durationSeconds: number;
  idle: number;
  ours: string | null;
  authCacheSize: string;
  tuning: 'performance' | 'default';
  /** Reuse a tree made by mailgen (with accounts.txt and passwd) instead of generating one. */
  data: string | null;
  /**
   * Session workload rounds (default 1). Round 1 is the full measurement; each further round
   * runs the session workload again on both servers, each started fresh, the order alternating,
   * so that a change in the machine's other load hits both about alike. Optional for callers.
   */
  rounds?: number;
  keep: boolean;
  /** Progress and per-phase reports go here. */
  log: (text: string) => void;
}

export interface ServerFigures {
  name: string;
  sessions: SessionResult;
  idle: IdleResult;
}

export interface CompareResult {
  data: { root: string; users: number; messages: number; octets: number; crlfOctets: number };
  options: Omit<CompareOptions, 'log'>;
  dovecot: ServerFigures;
  ours: ServerFigures | null;
  /** The session workload of every round (round 1 included), when ours ran. */
  rounds: Array<{ dovecot: SessionResult; ours: SessionResult }>;
}

export interface RunningServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

async function measure(
  name: string,
  start: () => Promise<RunningServer>,
  accounts: Account[],
  o: CompareOptions,
): Promise<ServerFigures> {
  const sessions = await sessionPhase(name, start, accounts, o);
  o.log(`== ${name}: ${o.idle} idle sessions on a fresh start\n`);
  const server = await start();
  let idle: IdleResult;
  try {
    idle = await runIdle({
      host: '127.0.0.1',
      port: server.port,
      accounts,
      idle: o.idle,
      concurrency: o.concurrency,
      serverPid: server.pid,
      settleMs: 1000,
    });
    o.log(formatIdle(idle));
  } finally {
    await server.stop();
  }
  return { name, sessions, idle };
}

/** Start the server, warm up (one untimed session per account), run the session workload, stop. */
async function sessionPhase(name: string, start: () => Promise<RunningServer>, accounts: Account[], o: CompareOptions): Promise<SessionResult> {
  o.log(`== ${name}: warm-up and ${o.concurrency} concurrent sessions for ${o.durationSeconds} s\n`);
  const server = await start();
  try {
    const conn = { host: '127.0.0.1', port: server.port };
    const warm = await runSessions({ ...conn, accounts, concurrency: Math.min(o.concurrency, accounts.length), sessions: accounts.length });
    if (warm.sessionsFailed > 0) o.log(`warm-up: ${warm.sessionsFailed} sessions failed: ${JSON.stringify(warm.errors)}\n`);
    const sessions = await runSessions({
      ...conn,
      accounts,
      concurrency: o.concurrency,
      durationMs: o.durationSeconds * 1000,
      serverPid: server.pid,
    });
    o.log(formatSessions(sessions));
    return sessions;
  } finally {
    await server.stop();
  }
}

/** Where the user ran the command: npm runs workspace scripts in the workspace, but records this. */
function invocationDir(): string {
  return process.env.INIT_CWD ?? process.cwd();
}

export function startOurs(cmd: string, env: Record<string, string>, dataDir: string): () => Promise<RunningServer> {
  return async () => {
    const port = await freePort();
    const logFd = openSync(join(dataDir, 'server.log'), 'a');
    let child: ChildProcess;
    try {
      child = spawn('sh', ['-c', cmd], {
        cwd: invocationDir(),
        env: { ...process.env, ...env, POP3_LISTEN: `127.0.0.1:${port}` },
        stdio: ['ignore', logFd, logFd],
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    const killOnExit = (): void => {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // gone
        }
      }
    };
    process.once('exit', killOnExit);
    try {
      await waitForGreeting({ host: '127.0.0.1', port, child, timeoutMs: 60_000 });
    } catch (err) {
      await stopProcess(child, { group: true, graceMs: 5_000 });
      process.off('exit', killOnExit);
      throw new Error(`our server did not start (log: ${join(dataDir, 'server.log')}): ${(err as Error).message}`, { cause: err });
    }
    return {
      port,
      pid: child.pid as number,
      stop: async () => {
        await stopProcess(child, { group: true, graceMs: 10_000 });
        await exited(child);
        process.off('exit', killOnExit);
      },
    };
  };
}

export async function compare(o: CompareOptions): Promise<CompareResult> {
  const scratch = mkdtempSync(join(os.tmpdir(), 'postern-compare-'));
  // Dovecot's unprivileged mail processes must be able to reach the tree.
  chmodSync(scratch, 0o755);
  try {
    let root: string;
    let passwdFile: string;
    let accounts: Account[];
    let octets = 0;
    let crlfOctets = 0;
    let users = o.users;
    let messages = o.messages;
    if (o.data !== null) {
      root = resolve(invocationDir(), o.data);
      passwdFile = join(root, 'passwd');
      accounts = readAccounts(join(root, 'accounts.txt'));
      users = accounts.length;
      messages = -1;
    } else {
      root = join(scratch, 'mail');
      o.log(`generating ${o.users} users x ${o.messages} messages (${o.sizes}) in ${root}\n`);
      const gen = generateMail({ root, users: o.users, messages: o.messages, sizes: o.sizes, seed: o.seed, lineEnds: o.crlf ? 'crlf' : 'lf' });
      passwdFile = gen.passwdFile;
      accounts = gen.users.map((u) => ({ user: u.user, password: u.password }));
      octets = gen.totalOctets;
      crlfOctets = gen.totalCrlfOctets;
    }
    if (accounts.length < Math.max(o.concurrency, o.idle)) {
      throw new UsageError(`need at least max(--concurrency, --idle) = ${Math.max(o.concurrency, o.idle)} users, have ${accounts.length}`);
    }

    const dovecotWork = join(scratch, 'dovecot');
    mkdirSync(dovecotWork, { recursive: true });
    const startDc = async (): Promise<RunningServer> => {
      const dc = await startDovecot({
        mailRoot: root,
        passwdFile,
        workDir: dovecotWork,
        authCacheSize: o.authCacheSize,
        tuning: o.tuning,
        maxSessions: Math.max(2048, o.idle + 64),
      });
      return { port: dc.port, pid: dc.pid, stop: dc.stop };
    };
    const dovecot = await measure('dovecot', startDc, accounts, o);

    let ours: ServerFigures | null = null;
    const rounds: CompareResult['rounds'] = [];
    if (o.ours !== null) {
      const dataDir = join(scratch, 'ours');
      mkdirSync(dataDir, { recursive: true });
      const env = {
        MAILDIR: `${root}/%u/Maildir`,
        PASSWD_FILE: passwdFile,
        DATA_DIR: dataDir,
        PLAINTEXT_AUTH: 'always',
        LOG_LEVEL: 'warn',
      };
      const startOwn = startOurs(o.ours, env, dataDir);
      ours = await measure('ours', startOwn, accounts, o);
      rounds.push({ dovecot: dovecot.sessions, ours: ours.sessions });
      for (let r = 2; r <= (o.rounds ?? 1); r++) {
        // Ours ran last: begin this round with it, so the order alternates.
        const oursFirst = r % 2 === 0;
        const first = await sessionPhase(`round ${r}: ${oursFirst ? 'ours' : 'dovecot'}`, oursFirst ? startOwn : startDc, accounts, o);
        const second = await sessionPhase(`round ${r}: ${oursFirst ? 'dovecot' : 'ours'}`, oursFirst ? startDc : startOwn, accounts, o);
        rounds.push(oursFirst ? { ours: first, dovecot: second } : { dovecot: first, ours: second });
      }
    }
    const { log: _log, ...options } = o;
    return { data: { root, users, messages, octets, crlfOctets }, options, dovecot, ours, rounds };
  } finally {
    if (o.keep) o.log(`kept ${scratch}\n`);
    else if (existsSync(scratch)) rmSync(scratch, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The table

interface Row {
  label: string;
  better: 'higher' | 'lower' | '';
  get(f: ServerFigures): number | null;
  digits: number;
}

const ROWS: Row[] = [
  { label: 'sessions/s', better: 'higher', get: (f) => f.sessions.sessionsPerSecond, digits: 1 },
  { label: 'RETR MB/s', better: 'higher', get: (f) => f.sessions.megabytesPerSecond, digits: 1 },
  { label: 'session p50 ms', better: 'lower', get: (f) => f.sessions.sessionLatencyMs.p50, digits: 1 },
  { label: 'session p99 ms', better: 'lower', get: (f) => f.sessions.sessionLatencyMs.p99, digits: 1 },
  { label: 'login p50 ms', better: 'lower', get: (f) => f.sessions.loginLatencyMs.p50, digits: 2 },
  { label: 'login p99 ms', better: 'lower', get: (f) => f.sessions.loginLatencyMs.p99, digits: 2 },
  { label: 'failed sessions', better: 'lower', get: (f) => f.sessions.sessionsFailed, digits: 0 },
  {
    label: 'server CPU ms/session',
    better: 'lower',
    get: (f) => (f.sessions.server === null || f.sessions.sessionsOk === 0 ? null : (f.sessions.server.cpuSeconds * 1000) / f.sessions.sessionsOk),
    digits: 2,
  },
  { label: 'server cores busy', better: '', get: (f) => f.sessions.server?.cores ?? null, digits: 2 },
  { label: 'load generator cores', better: '', get: (f) => f.sessions.clientCores, digits: 2 },
  { label: 'load generator CPU ms/session', better: '', get: (f) => f.sessions.clientCpuMsPerSession, digits: 2 },
  { label: 'peak RSS MB (sessions)', better: 'lower', get: (f) => (f.sessions.server === null ? null : f.sessions.server.peakRssBytes / 1e6), digits: 1 },
  { label: 'idle sessions held', better: '', get: (f) => f.idle.held, digits: 0 },
  { label: 'idle: RSS before MB', better: 'lower', get: (f) => (f.idle.memoryBefore === null ? null : f.idle.memoryBefore.rssBytes / 1e6), digits: 1 },
  { label: 'idle: RSS after MB', better: 'lower', get: (f) => (f.idle.memoryAfter === null ? null : f.idle.memoryAfter.rssBytes / 1e6), digits: 1 },
  { label: 'idle: PSS after MB', better: 'lower', get: (f) => (f.idle.memoryAfter?.pssBytes == null ? null : f.idle.memoryAfter.pssBytes / 1e6), digits: 1 },
  { label: 'RSS per idle session kB', better: 'lower', get: (f) => (f.idle.rssPerSession === null ? null : f.idle.rssPerSession / 1e3), digits: 1 },
  { label: 'PSS per idle session kB', better: 'lower', get: (f) => (f.idle.pssPerSession === null ? null : f.idle.pssPerSession / 1e3), digits: 1 },
];

export function formatTable(r: CompareResult): string {
  const fmt = (x: number | null, d: number): string => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(d));
  const lines: string[][] = [];
  const head = ['', 'dovecot', r.ours === null ? '' : 'ours', r.ours === null ? '' : 'ours/dovecot', ''];
  lines.push(head);
  for (const row of ROWS) {
    const d = row.get(r.dovecot);
    const o = r.ours === null ? null : row.get(r.ours);
    const ratio = r.ours === null || d === null || o === null || d === 0 ? null : o / d;
    lines.push([
      row.label,
      fmt(d, row.digits),
      r.ours === null ? '' : fmt(o, row.digits),
      r.ours === null ? '' : fmt(ratio, 2),
      row.better === '' ? '' : `(${row.better} is better)`,
    ]);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const body = lines
    .map((l) => l.map((cell, i) => (i === 0 || i === 4 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd())
    .join('\n');
  const o = r.options;
  return (
    roundsText(r) +
    `\nData: ${r.data.users} users` +
    (r.data.messages >= 0 ? ` x ${r.data.messages} messages, ${(r.data.crlfOctets / 1e6).toFixed(1)} MB as served` : '') +
    `, ${o.crlf ? 'CRLF' : 'LF'} line ends on disk` +
    `; workload: ${o.concurrency} concurrent sessions for ${o.durationSeconds} s; ${o.idle} idle sessions; ` +
    `Dovecot tuning ${o.tuning}, auth_cache_size ${o.authCacheSize}\n\n${body}\n`
  );
}

const middle = (values: number[]): number => {
  const v = [...values].sort((a, b) => a - b);
  const k = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[k] as number) : ((v[k - 1] as number) + (v[k] as number)) / 2;
};

/** With more than one round: each round's ours/dovecot, then their median and range. */
function roundsText(r: CompareResult): string {
  if (r.rounds.length < 2) return '';
  const cpu = (s: SessionResult): number => (s.server === null || s.sessionsOk === 0 ? Number.NaN : (s.server.cpuSeconds * 1000) / s.sessionsOk);
  const figures: Array<[string, (s: SessionResult) => number]> = [
    ['sessions/s', (s) => s.sessionsPerSecond],
    ['RETR MB/s', (s) => s.megabytesPerSecond],
    ['server CPU ms/session', cpu],
    ['load generator CPU ms/session', (s) => s.clientCpuMsPerSession],
  ];
  let out = '\nRounds (ours/dovecot; round 1 is the table below):\n';
  r.rounds.forEach((round, i) => {
    out += `  round ${i + 1}: ` + figures.map(([label, get]) => `${label} ${get(round.dovecot).toFixed(1)} / ${get(round.ours).toFixed(1)} = ${(get(round.ours) / get(round.dovecot)).toFixed(2)}`).join('; ') + '\n';
  });
  for (const [label, get] of figures) {
    const ratios = r.rounds.map((round) => get(round.ours) / get(round.dovecot));
    out += `  ${label} ours/dovecot over ${ratios.length} rounds: median ${middle(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})\n`;
  }
  return out;
}

export const USAGE = `Usage: npm run bench:compare -w loadtest -- [options]
  --ours CMD             start command of our server (see src/compare.ts for its environment);
                         without it only Dovecot is measured
  --users N              users to generate (default 256)
  --messages M           messages per user (default 20)
  --sizes SPEC           message sizes (default ${DEFAULT_SIZES})
  --seed N               data seed (default 1)
  --crlf                 generate the tree with CRLF line ends (as our LMTP delivery stores mail)
  --data DIR             use a tree made by mailgen.ts (DIR/passwd, DIR/accounts.txt) instead
  --concurrency C        concurrent sessions (default 16)
  --duration S           seconds of the session workload (default 10)
  --rounds N             run the session workload N times on both servers, the order alternating,
                         and print each round's ratios with their median and range (default 1)
  --idle N               idle sessions to hold (default 200)
  --auth-cache-size S    Dovecot auth_cache_size (default 0)
  --tuning T             Dovecot: performance (default) or default
  --keep                 keep the generated data and work directories
  --json                 print the result as JSON (reports go to stderr)
`;

/** Command-line options for the data and the session workload, shared with overhead.ts. */
export const WORKLOAD_ARGS = {
  ours: { type: 'string' },
  users: { type: 'string' },
  messages: { type: 'string' },
  sizes: { type: 'string' },
  seed: { type: 'string' },
  concurrency: { type: 'string' },
  duration: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      ...WORKLOAD_ARGS,
      crlf: { type: 'boolean' },
      data: { type: 'string' },
      idle: { type: 'string' },
      'auth-cache-size': { type: 'string' },
      tuning: { type: 'string' },
      keep: { type: 'boolean' },
      rounds: { type: 'string' },
    },
    strict: true,
  });
  if (v.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const tuning = v.tuning ?? 'performance';
  if (tuning !== 'performance' && tuning !== 'default') throw new UsageError('--tuning is performance or default');
  const json = v.json === true;
  const result = await compare({
    users: intOption('users', v.users, 256, 1),
    messages: intOption('messages', v.messages, 20),
    sizes: v.sizes ?? DEFAULT_SIZES,
    crlf: v.crlf === true,
    seed: intOption('seed', v.seed, 1),
    concurrency: intOption('concurrency', v.concurrency, 16, 1),
    durationSeconds: numberOption('duration', v.duration, 10),
    idle: intOption('idle', v.idle, 200, 1),
    ours: v.ours ?? null,
    authCacheSize: v['auth-cache-size'] ?? '0',
    tuning,
    data: v.data ?? null,
    keep: v.keep === true,
    rounds: intOption('rounds', v.rounds, 1, 1),
    log: (t) => (json ? process.stderr : process.stdout).write(t),
  });
  if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else process.stdout.write(formatTable(result));
  return 0;
}

if (isMain(import.meta.url)) runCli(main, USAGE);

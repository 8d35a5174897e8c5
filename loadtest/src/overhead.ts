// What metrics and logging cost: the same session workload against our server with metrics on and
// info-level logging (to a file, as JSON), and with METRICS=off and LOG_LEVEL=silent, in several
// rounds so that drift on a shared machine hits both alike:
//   --mode parallel (default): each round starts both servers and drives both at once, C
//     concurrent sessions each, over the same seconds: whatever else the machine does then, both
//     see it.
//   --mode alternate: one server at a time, the order alternating (on, off, off, on, ...).
//
// Each run starts the servers fresh, warms up (one untimed session per account), runs C concurrent
// sessions for D seconds, and stops them. Reported per variant: the median sessions/s and the median
// server CPU per session (less noisy than sessions/s when the machine is shared), and the ratios
// on/off. Our server is started as in compare.ts (see there for its environment), plus:
//   on:  METRICS=on  LOG_LEVEL=info
//   off: METRICS=off LOG_LEVEL=silent
//
// Usage: npm run bench:overhead  (builds first)   or   npm run bench:overhead -w loadtest -- [options]

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, intOption, isMain, numberOption, runCli } from './cli-util.js';
import { WORKLOAD_ARGS, startOurs } from './compare.js';
import { runSessions, type Account } from './generator.js';
import { DEFAULT_SIZES, generateMail } from './mailgen.js';

export const DEFAULT_OURS =
  'POP3S_LISTEN=off LMTP_LISTEN=off ADMIN_LISTEN=off MAX_CONNECTIONS_PER_IP=100000 WORKERS=1 exec node services/server/dist/main.js';

export type Variant = 'on' | 'off';

const VARIANT_ENV: Readonly<Record<Variant, Record<string, string>>> = {
  on: { METRICS: 'on', LOG_LEVEL: 'info' },
  off: { METRICS: 'off', LOG_LEVEL: 'silent' },
};

export interface OverheadOptions {
  users: number;
  messages: number;
  sizes: string;
  seed: number;
  concurrency: number;
  durationSeconds: number;
  rounds: number;
  mode: 'parallel' | 'alternate';
  ours: string;
  log: (text: string) => void;
}

export interface OverheadRun {
  variant: Variant;
  round: number;
  sessionsOk: number;
  sessionsFailed: number;
  sessionsPerSecond: number;
  /** Server CPU (user + system, whole process tree) per successful session. */
  cpuMsPerSession: number;
  /** JSON log lines the server wrote during the run. */
  logLines: number;
}

export interface VariantSummary {
  runs: number;
  sessions: number;
  sessionsPerSecondMedian: number;
  cpuMsPerSessionMedian: number;
}

export interface OverheadResult {
  options: Omit<OverheadOptions, 'log'>;
  runs: OverheadRun[];
  on: VariantSummary;
  off: VariantSummary;
  /** on / off of the medians: sessions/s (1.0: no cost; 0.95: 5 % fewer) and CPU per session (1.05: 5 % more). */
  ratio: { sessionsPerSecond: number; cpuMsPerSession: number };
  /** The median of each round's own on / off ratio (the paired figure; with --mode parallel, the one to quote). */
  pairedRatio: { sessionsPerSecond: number; cpuMsPerSession: number };
}

export function median(values: readonly number[]): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

function jsonLines(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  return text.split('\n').filter((l) => l.startsWith('{')).length;
}

function summarise(runs: readonly OverheadRun[]): VariantSummary {
  return {
    runs: runs.length,
    sessions: runs.reduce((n, r) => n + r.sessionsOk, 0),
    sessionsPerSecondMedian: median(runs.map((r) => r.sessionsPerSecond)),
    cpuMsPerSessionMedian: median(runs.map((r) => r.cpuMsPerSession)),
  };
}

export async function overhead(o: OverheadOptions): Promise<OverheadResult> {
  const scratch = mkdtempSync(join(os.tmpdir(), 'postern-overhead-'));
  try {
    const root = join(scratch, 'mail');
    o.log(`generating ${o.users} users x ${o.messages} messages (${o.sizes}) in ${root}\n`);
    const gen = generateMail({ root, users: o.users, messages: o.messages, sizes: o.sizes, seed: o.seed, lineEnds: 'lf' });
    const accounts: Account[] = gen.users.map((u) => ({ user: u.user, password: u.password }));
    if (accounts.length < o.concurrency) throw new UsageError(`need at least --concurrency = ${o.concurrency} users, have ${accounts.length}`);
    const runs: OverheadRun[] = [];
    /** Starts one variant's server and warms it up; `measure()` then runs the timed workload. */
    const prepare = async (variant: Variant) => {
      const dataDir = join(scratch, variant);
      mkdirSync(dataDir, { recursive: true });
      const env = {
        MAILDIR: `${root}/%u/Maildir`,
        PASSWD_FILE: gen.passwdFile,
        DATA_DIR: dataDir,
        PLAINTEXT_AUTH: 'always',
        LOG_FORMAT: 'json',
        ...VARIANT_ENV[variant],
      };
      const server = await startOurs(o.ours, env, dataDir)();
      const logFile = join(dataDir, 'server.log');
      const conn = { host: '127.0.0.1', port: server.port };
      try {
        await runSessions({ ...conn, accounts, concurrency: Math.min(o.concurrency, accounts.length), sessions: accounts.length });
      } catch (e) {
        await server.stop();
        throw e;
      }
      const measure = async (round: number): Promise<OverheadRun> => {
        const linesBefore = jsonLines(logFile);
        const r = await runSessions({ ...conn, accounts, concurrency: o.concurrency, durationMs: o.durationSeconds * 1000, serverPid: server.pid });
        return {
          variant,
          round,
          sessionsOk: r.sessionsOk,
          sessionsFailed: r.sessionsFailed,
          sessionsPerSecond: r.sessionsPerSecond,
          cpuMsPerSession: r.server === null || r.sessionsOk === 0 ? Number.NaN : (r.server.cpuSeconds * 1000) / r.sessionsOk,
          logLines: jsonLines(logFile) - linesBefore,
        };
      };
      return { server, measure };
    };
    const report = (run: OverheadRun): void => {
      runs.push(run);
      o.log(
        `round ${run.round + 1}/${o.rounds} ${run.variant.padEnd(3)}: ${run.sessionsPerSecond.toFixed(1)} sessions/s, ` +
          `${run.cpuMsPerSession.toFixed(2)} ms CPU/session, ${run.sessionsOk} ok, ${run.sessionsFailed} failed\n`,
      );
    };
    for (let round = 0; round < o.rounds; round++) {
      const order: Variant[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      if (o.mode === 'parallel') {
        const both = [];
        try {
          for (const variant of order) both.push(await prepare(variant));
          for (const run of await Promise.all(both.map((b) => b.measure(round)))) report(run);
        } finally {
          await Promise.all(both.map((b) => b.server.stop()));
        }
        continue;
      }
      for (const variant of order) {
        const one = await prepare(variant);
        try {
          report(await one.measure(round));
        } finally {
          await one.server.stop();
        }
      }
    }
    const on = summarise(runs.filter((r) => r.variant === 'on'));
    const off = summarise(runs.filter((r) => r.variant === 'off'));
    const { log: _log, ...options } = o;
    const paired = (figure: 'sessionsPerSecond' | 'cpuMsPerSession'): number => {
      const ratios: number[] = [];
      for (let round = 0; round < o.rounds; round++) {
        const a = runs.find((r) => r.round === round && r.variant === 'on');
        const b = runs.find((r) => r.round === round && r.variant === 'off');
        if (a && b) ratios.push(a[figure] / b[figure]);
      }
      return median(ratios);
    };
    return {
      options,
      runs,
      on,
      off,
      ratio: {
        sessionsPerSecond: on.sessionsPerSecondMedian / off.sessionsPerSecondMedian,
        cpuMsPerSession: on.cpuMsPerSessionMedian / off.cpuMsPerSessionMedian,
      },
      pairedRatio: { sessionsPerSecond: paired('sessionsPerSecond'), cpuMsPerSession: paired('cpuMsPerSession') },
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function formatOverhead(r: OverheadResult): string {
  const o = r.options;
  const row = (name: string, s: VariantSummary): string =>
    `${name.padEnd(34)} ${s.sessionsPerSecondMedian.toFixed(1).padStart(10)} ${s.cpuMsPerSessionMedian.toFixed(2).padStart(16)}`;
  return (
    `\n${o.rounds} rounds (${o.mode}), ${o.users} users x ${o.messages} messages, ${o.concurrency} concurrent sessions for ${o.durationSeconds} s per run; medians\n\n` +
    `${''.padEnd(34)} ${'sessions/s'.padStart(10)} ${'CPU ms/session'.padStart(16)}\n` +
    `${row('metrics on, LOG_LEVEL=info', r.on)}\n` +
    `${row('metrics off, LOG_LEVEL=silent', r.off)}\n` +
    `${'on/off (of the medians)'.padEnd(34)} ${r.ratio.sessionsPerSecond.toFixed(3).padStart(10)} ${r.ratio.cpuMsPerSession.toFixed(3).padStart(16)}\n` +
    `${'on/off (median of rounds)'.padEnd(34)} ${r.pairedRatio.sessionsPerSecond.toFixed(3).padStart(10)} ${r.pairedRatio.cpuMsPerSession.toFixed(3).padStart(16)}\n`
  );
}

export const USAGE = `Usage: npm run bench:overhead -w loadtest -- [options]
  --ours CMD         start command of our server (default: ${DEFAULT_OURS})
  --rounds N         on/off pairs (default 5)
  --mode M           parallel (default: both servers driven at once in each round) or alternate
  --duration S       seconds per run (default 10)
  --concurrency C    concurrent sessions (default 16)
  --users N          users to generate (default 256)
  --messages M       messages per user (default 20)
  --sizes SPEC       message sizes (default ${DEFAULT_SIZES})
  --seed N           data seed (default 1)
  --json             print the result as JSON (progress goes to stderr)
`;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: { ...WORKLOAD_ARGS, rounds: { type: 'string' }, mode: { type: 'string' } },
    strict: true,
  });
  if (v.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const json = v.json === true;
  const mode = v.mode ?? 'parallel';
  if (mode !== 'parallel' && mode !== 'alternate') throw new UsageError('--mode is parallel or alternate');
  const result = await overhead({
    mode,
    ours: v.ours ?? DEFAULT_OURS,
    rounds: intOption('rounds', v.rounds, 5, 1),
    durationSeconds: numberOption('duration', v.duration, 10),
    concurrency: intOption('concurrency', v.concurrency, 16, 1),
    users: intOption('users', v.users, 256, 1),
    messages: intOption('messages', v.messages, 20),
    sizes: v.sizes ?? DEFAULT_SIZES,
    seed: intOption('seed', v.seed, 1),
    log: (t) => (json ? process.stderr : process.stdout).write(t),
  });
  if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else process.stdout.write(formatOverhead(result));
  return 0;
}

if (isMain(import.meta.url)) runCli(main, USAGE);

// The POP3 load generator.
//
// Session workload: C workers each run sessions back to back (connect, USER/PASS, STAT, UIDL,
// RETR every message, QUIT and wait for the server to close), each on an account no other worker
// holds at that moment (servers with pop3_lock_session would answer [IN-USE] otherwise). It stops
// by itself after a duration and/or a number of sessions; sessions in flight then finish.
//
// Idle workload: opens N sessions, each logged in on its own account, checks them with NOOP, and
// reports the server's memory before and after.

import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import { Pop3Client, Pop3Error } from './pop3-client.js';
import { treeCpuSeconds, treeMemory, type TreeMemory } from './procstat.js';
import { expandTemplate } from './cli-util.js';

export interface Account {
  user: string;
  password: string;
}

/**
 * Reads accounts from a file of `user:password` lines, or a Dovecot passwd-file whose passwords
 * are `{PLAIN}...` (hashed entries are refused: a client needs the clear password).
 */
export function readAccounts(file: string): Account[] {
  const out: Account[] = [];
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    const user = fields[0] ?? '';
    let password = fields[1] ?? '';
    if (password.startsWith('{')) {
      const end = password.indexOf('}');
      const scheme = password.slice(1, end).toUpperCase();
      if (scheme !== 'PLAIN') throw new Error(`${file}: ${user} has a ${scheme} hash; give a file with clear passwords (accounts.txt)`);
      password = password.slice(end + 1);
    }
    if (user === '') throw new Error(`${file}: line without a user name`);
    out.push({ user, password });
  }
  return out;
}

/** Accounts `template` expanded for 1..n, all with `password` (which may use %d too). */
export function templateAccounts(template: string, password: string, n: number): Account[] {
  return Array.from({ length: n }, (_, i) => ({
    user: expandTemplate(template, i + 1),
    password: expandTemplate(password, i + 1),
  }));
}

export interface ConnectionOptions {
  host: string;
  port: number;
  /** none (default), implicit TLS, or STLS after the greeting. */
  tls?: 'none' | 'implicit' | 'starttls';
  /** Options for TLS; certificates are not verified unless `ca` or `rejectUnauthorized` is given. */
  tlsOptions?: tls.ConnectionOptions;
  /** Per-reply timeout. Default 30 s. */
  timeoutMs?: number;
  /** Send commands without waiting for replies (RFC 2449). Default false. */
  pipelining?: boolean;
}

export interface SessionOptions extends ConnectionOptions {
  accounts: Account[];
  /** Concurrent sessions. Default 16. */
  concurrency?: number;
  /** Start no new session after this long. */
  durationMs?: number;
  /** Run at most this many sessions. */
  sessions?: number;
  /** RETR every message (default) or none. */
  retr?: 'all' | 'none';
  /** Also LIST (after STAT, before UIDL). Default false. */
  list?: boolean;
  /** DELE every message before QUIT (destroys the data set). */
  dele?: boolean;
  /** Server process whose tree's CPU time and memory to report. */
  serverPid?: number;
  signal?: AbortSignal;
  /** Called after every successful session. */
  onSession?: (s: SessionRecord) => void;
}

export interface SessionRecord {
  user: string;
  messages: number;
  /** Octets of the STAT reply. */
  statOctets: number;
  /** Decoded octets of all RETRs. */
  retrOctets: number;
  sessionMs: number;
  loginMs: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface ServerUsage {
  pid: number;
  cpuSeconds: number;
  /** CPU used per wall-clock second (1.0 = one core busy). */
  cores: number;
  memoryBefore: TreeMemory;
  memoryAfter: TreeMemory;
  peakRssBytes: number;
}

export interface SessionResult {
  kind: 'sessions';
  target: string;
  concurrency: number;
  elapsedSeconds: number;
  sessionsOk: number;
  sessionsFailed: number;
  sessionsPerSecond: number;
  messagesRetrieved: number;
  retrOctets: number;
  /** RETR payload, 10^6 octets per second. */
  megabytesPerSecond: number;
  sessionLatencyMs: LatencySummary;
  loginLatencyMs: LatencySummary;
  errors: Record<string, number>;
  server: ServerUsage | null;
  /** Load generator CPU per wall-clock second (1.0 = one core busy). */
  clientCores: number;
  /** Load generator CPU (user + system, this process) per successful session, milliseconds. */
  clientCpuMsPerSession: number;
}

/** Values in milliseconds, summarised. */
export class Latencies {
  private values = new Float64Array(1024);
  private n = 0;

  add(ms: number): void {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.n++] = ms;
  }

  summary(): LatencySummary {
    const v = this.values.slice(0, this.n).sort();
    const at = (q: number): number => (v.length === 0 ? 0 : (v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)] as number));
    let sum = 0;
    for (const x of v) sum += x;
    return {
      count: v.length,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: v.length === 0 ? 0 : (v[v.length - 1] as number),
      mean: v.length === 0 ? 0 : sum / v.length,
    };
  }
}

/** A failed check on what the server returned (not a POP3 error). */
export class CheckError extends Error {
  override name = 'CheckError';
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
  }
}

/** Stable error kinds for the report: `<stage>: <what>`. */
export function errorKind(stage: string, err: unknown): string {
  if (err instanceof Pop3Error) {
    if (err.code === 'negative-reply') return `${stage}: -ERR${err.reply?.respCode != null ? ` [${err.reply.respCode}]` : ''}`;
    if (err.code === 'connect') {
      const errno = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      return `${stage}: connect${errno === undefined ? '' : ` ${errno}`}`;
    }
    return `${stage}: ${err.code}`;
  }
  if (err instanceof CheckError) return `${stage}: ${err.kind}`;
  return `${stage}: ${err instanceof Error ? err.name : 'error'}`;
}

function clientOptions(o: ConnectionOptions): Parameters<typeof Pop3Client.connect>[0] {
  const tlsOpts = { rejectUnauthorized: false, ...o.tlsOptions };
  return {
    host: o.host,
    port: o.port,
    timeoutMs: o.timeoutMs ?? 30_000,
    pipelining: o.pipelining ?? false,
    tls: o.tls === 'implicit' ? tlsOpts : undefined,
    starttls: o.tls === 'starttls' ? tlsOpts : undefined,
    // The generator only counts RETR octets: one read buffer for all its connections.
    reuseReadBuffer: true,
  };
}

function target(o: ConnectionOptions): string {
  const mode = o.tls === 'implicit' ? ' (TLS)' : o.tls === 'starttls' ? ' (STLS)' : '';
  return `${o.host}:${o.port}${mode}`;
}

/** A signal for many concurrent clients, following the caller's. */
function sharedSignal(outer: AbortSignal | undefined): { signal: AbortSignal; release(): void } {
  const inner = new AbortController();
  setMaxListeners(0, inner.signal);
  if (outer === undefined) return { signal: inner.signal, release: () => undefined };
  const forward = (): void => inner.abort(outer.reason);
  if (outer.aborted) forward();
  else outer.addEventListener('abort', forward, { once: true });
  return { signal: inner.signal, release: () => outer.removeEventListener('abort', forward) };
}

/** Accounts handed out first-in first-out, so one is reused as late as possible. */
class AccountPool {
  private readonly free: Account[];
  constructor(accounts: Account[]) {
    this.free = [...accounts];
  }
  take(): Account {
    const a = this.free.shift();
    if (a === undefined) throw new Error('account pool is empty');
    return a;
  }
  give(a: Account): void {
    this.free.push(a);
  }
}

async function oneSession(
  acct: Account,
  opts: SessionOptions,
  signal: AbortSignal,
  stageRef: { stage: string },
): Promise<SessionRecord> {
  const t0 = performance.now();
  stageRef.stage = 'connect';
  const client = await Pop3Client.connect({ ...clientOptions(opts), signal });
  try {
    stageRef.stage = 'login';
    const l0 = performance.now();
    await client.login(acct.user, acct.password);
    const loginMs = performance.now() - l0;
    stageRef.stage = 'stat';
    const stat = await client.stat();
    if (opts.list === true) {
      stageRef.stage = 'list';
      const list = await client.list();
      if (list.length !== stat.count) throw new CheckError('count-mismatch', `LIST listed ${list.length} messages, STAT ${stat.count}`);
    }
    stageRef.stage = 'uidl';
    const uidl = await client.uidl();
    if (uidl.length !== stat.count) {
      throw new CheckError('count-mismatch', `UIDL listed ${uidl.length} messages, STAT ${stat.count}`);
    }
    let retrOctets = 0;
    if ((opts.retr ?? 'all') === 'all') {
      stageRef.stage = 'retr';
      if (opts.pipelining === true) {
        const all = await Promise.all(uidl.map((u) => client.retr(u.msg)));
        for (const r of all) retrOctets += r.octets;
      } else {
        for (const u of uidl) retrOctets += (await client.retr(u.msg)).octets;
      }
      if (retrOctets !== stat.size) {
        throw new CheckError('size-mismatch', `RETR returned ${retrOctets} octets, STAT said ${stat.size}`);
      }
    }
    if (opts.dele === true) {
      stageRef.stage = 'dele';
      if (opts.pipelining === true) await Promise.all(uidl.map((u) => client.dele(u.msg)));
      else for (const u of uidl) await client.dele(u.msg);
    }
    stageRef.stage = 'quit';
    await client.quit();
    return {
      user: acct.user,
      messages: uidl.length,
      statOctets: stat.size,
      retrOctets,
      sessionMs: performance.now() - t0,
      loginMs,
    };
  } finally {
    client.destroy();
  }
}

/** Samples the server's memory once a second, for the peak. */
function memorySampler(pid: number | undefined): { stop(): number } {
  if (pid === undefined) return { stop: () => 0 };
  let peak = 0;
  const sample = (): void => {
    peak = Math.max(peak, treeMemory(pid).rssBytes);
  };
  sample();
  const timer = setInterval(sample, 1000);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

export async function runSessions(opts: SessionOptions): Promise<SessionResult> {
  const concurrency = opts.concurrency ?? 16;
  if (opts.durationMs === undefined && opts.sessions === undefined) {
    throw new Error('give a duration, a number of sessions, or both');
  }
  if (opts.accounts.length < concurrency) {
    throw new Error(`${concurrency} concurrent sessions need at least as many accounts (have ${opts.accounts.length})`);
  }
  const pool = new AccountPool(opts.accounts);
  const shared = sharedSignal(opts.signal);
  const sessionLat = new Latencies();
  const loginLat = new Latencies();
  const errors: Record<string, number> = {};
  let ok = 0;
  let failed = 0;
  let started = 0;
  let messages = 0;
  let retrOctets = 0;

  const pid = opts.serverPid;
  const cpuBefore = pid === undefined ? 0 : treeCpuSeconds(pid);
  const memBefore = pid === undefined ? null : treeMemory(pid);
  const sampler = memorySampler(pid);
  const clientCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;

  const worker = async (): Promise<void> => {
    for (;;) {
      if (opts.sessions !== undefined && started >= opts.sessions) return;
      if (performance.now() >= deadline || shared.signal.aborted) return;
      started++;
      const acct = pool.take();
      const stageRef = { stage: 'connect' };
      try {
        const rec = await oneSession(acct, opts, shared.signal, stageRef);
        ok++;
        messages += rec.messages;
        retrOctets += rec.retrOctets;
        sessionLat.add(rec.sessionMs);
        loginLat.add(rec.loginMs);
        opts.onSession?.(rec);
      } catch (err) {
        failed++;
        const kind = errorKind(stageRef.stage, err);
        errors[kind] = (errors[kind] ?? 0) + 1;
      } finally {
        pool.give(acct);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  shared.release();

  const elapsed = (performance.now() - t0) / 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  let server: ServerUsage | null = null;
  if (pid !== undefined && memBefore !== null) {
    const cpu = treeCpuSeconds(pid) - cpuBefore;
    server = {
      pid,
      cpuSeconds: cpu,
      cores: cpu / elapsed,
      memoryBefore: memBefore,
      memoryAfter: treeMemory(pid),
      peakRssBytes: sampler.stop(),
    };
  } else {
    sampler.stop();
  }
  return {
    kind: 'sessions',
    target: target(opts),
    concurrency,
    elapsedSeconds: elapsed,
    sessionsOk: ok,
    sessionsFailed: failed,
    sessionsPerSecond: ok / elapsed,
    messagesRetrieved: opts.retr === 'none' ? 0 : messages,
    retrOctets,
    megabytesPerSecond: retrOctets / 1e6 / elapsed,
    sessionLatencyMs: sessionLat.summary(),
    loginLatencyMs: loginLat.summary(),
    errors,
    server,
    clientCores: (clientCpu.user + clientCpu.system) / 1e6 / elapsed,
    clientCpuMsPerSession: ok === 0 ? 0 : (clientCpu.user + clientCpu.system) / 1e3 / ok,
  };
}

// ---------------------------------------------------------------------------------------------
// Idle sessions

export interface IdleOptions extends ConnectionOptions {
  accounts: Account[];
  /** Sessions to hold open, each on its own account. */
  idle: number;
  /** How many logins run at once while opening. Default 16. */
  concurrency?: number;
  /** Server process whose tree's memory to report. */
  serverPid?: number;
  /** Pause after all sessions are open and checked, before measuring. Default 0. */
  settleMs?: number;
  signal?: AbortSignal;
}

export interface IdleResult {
  kind: 'idle';
  target: string;
  requested: number;
  /** Sessions that logged in and answered NOOP when memory was measured. */
  held: number;
  errors: Record<string, number>;
  openSeconds: number;
  loginLatencyMs: LatencySummary;
  memoryBefore: TreeMemory | null;
  memoryAfter: TreeMemory | null;
  /** (after - before) / held, bytes. */
  rssPerSession: number | null;
  pssPerSession: number | null;
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
}

export async function runIdle(opts: IdleOptions): Promise<IdleResult> {
  if (opts.accounts.length < opts.idle) {
    throw new Error(`${opts.idle} idle sessions need as many accounts, each its own (have ${opts.accounts.length})`);
  }
  const pid = opts.serverPid;
  const errors: Record<string, number> = {};
  const note = (kind: string): void => {
    errors[kind] = (errors[kind] ?? 0) + 1;
  };
  const loginLat = new Latencies();
  const shared = sharedSignal(opts.signal);
  const memoryBefore = pid === undefined ? null : treeMemory(pid);
  const clients: Pop3Client[] = [];
  const t0 = performance.now();
  await mapLimit(opts.accounts.slice(0, opts.idle), opts.concurrency ?? 16, async (acct) => {
    if (shared.signal.aborted) return;
    let stage = 'connect';
    let client: Pop3Client | null = null;
    try {
      client = await Pop3Client.connect({ ...clientOptions(opts), signal: shared.signal });
      stage = 'login';
      const l0 = performance.now();
      await client.login(acct.user, acct.password);
      loginLat.add(performance.now() - l0);
      clients.push(client);
    } catch (err) {
      client?.destroy();
      note(errorKind(stage, err));
    }
  });
  const openSeconds = (performance.now() - t0) / 1000;

  // Every session must still be there: one NOOP round trip each.
  const alive: Pop3Client[] = [];
  await Promise.all(
    clients.map(async (c) => {
      try {
        await c.noop();
        alive.push(c);
      } catch (err) {
        c.destroy();
        note(errorKind('noop', err));
      }
    }),
  );
  if ((opts.settleMs ?? 0) > 0) await new Promise((r) => setTimeout(r, opts.settleMs));
  const memoryAfter = pid === undefined ? null : treeMemory(pid);

  await mapLimit(alive, opts.concurrency ?? 16, async (c) => {
    try {
      await c.quit();
    } catch (err) {
      note(errorKind('quit', err));
    } finally {
      c.destroy();
    }
  });

  shared.release();
  const held = alive.length;
  const per = (f: (m: TreeMemory) => number | null): number | null => {
    if (memoryBefore === null || memoryAfter === null || held === 0) return null;
    const a = f(memoryAfter);
    const b = f(memoryBefore);
    return a === null || b === null ? null : (a - b) / held;
  };
  return {
    kind: 'idle',
    target: target(opts),
    requested: opts.idle,
    held,
    errors,
    openSeconds,
    loginLatencyMs: loginLat.summary(),
    memoryBefore,
    memoryAfter,
    rssPerSession: per((m) => m.rssBytes),
    pssPerSession: per((m) => m.pssBytes),
  };
}

// ---------------------------------------------------------------------------------------------
// Text reports

const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);
const kb = (bytes: number): string => (bytes / 1e3).toFixed(0);

function latencyLine(l: LatencySummary): string {
  return `p50 ${ms(l.p50)} ms  p90 ${ms(l.p90)} ms  p99 ${ms(l.p99)} ms  max ${ms(l.max)} ms`;
}

function errorLines(errors: Record<string, number>): string {
  const entries = Object.entries(errors).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return '  errors           none\n';
  return entries.map(([k, v], i) => `  ${i === 0 ? 'errors          ' : '                '} ${v}  ${k}\n`).join('');
}

function memoryText(m: TreeMemory): string {
  return `RSS ${mb(m.rssBytes)} MB${m.pssBytes === null ? '' : `, PSS ${mb(m.pssBytes)} MB`} in ${m.processes} processes`;
}

export function formatSessions(r: SessionResult): string {
  let out =
    `POP3 sessions against ${r.target}: ${r.concurrency} concurrent, ${r.elapsedSeconds.toFixed(1)} s\n` +
    `  sessions         ${r.sessionsOk} ok, ${r.sessionsFailed} failed: ${r.sessionsPerSecond.toFixed(1)} sessions/s\n` +
    `  RETR payload     ${r.messagesRetrieved} messages, ${mb(r.retrOctets)} MB: ${r.megabytesPerSecond.toFixed(1)} MB/s\n` +
    `  session latency  ${latencyLine(r.sessionLatencyMs)}\n` +
    `  login latency    ${latencyLine(r.loginLatencyMs)}\n` +
    errorLines(r.errors);
  if (r.server !== null) {
    const s = r.server;
    out +=
      `  server pid ${s.pid}   CPU ${s.cpuSeconds.toFixed(2)} s (${(s.cores * 100).toFixed(0)}% of a core, ` +
      `${r.sessionsOk > 0 ? ((s.cpuSeconds * 1000) / r.sessionsOk).toFixed(2) : '-'} ms per session); ` +
      `peak RSS ${mb(s.peakRssBytes)} MB\n` +
      `                   before: ${memoryText(s.memoryBefore)}\n` +
      `                   after:  ${memoryText(s.memoryAfter)}\n`;
  }
  out +=
    `  load generator   CPU ${(r.clientCores * 100).toFixed(0)}% of a core` +
    `${r.sessionsOk > 0 ? `, ${r.clientCpuMsPerSession.toFixed(2)} ms per session` : ''}\n`;
  return out;
}

export function formatIdle(r: IdleResult): string {
  let out =
    `POP3 idle sessions against ${r.target}: ${r.held} of ${r.requested} held, opened in ${r.openSeconds.toFixed(1)} s\n` +
    `  login latency    ${latencyLine(r.loginLatencyMs)}\n` +
    errorLines(r.errors);
  if (r.memoryBefore !== null && r.memoryAfter !== null) {
    out +=
      `  server before    ${memoryText(r.memoryBefore)}\n` +
      `  server after     ${memoryText(r.memoryAfter)}\n` +
      `  per idle session RSS ${r.rssPerSession === null ? '-' : kb(r.rssPerSession)} kB` +
      `${r.pssPerSession === null ? '' : `, PSS ${kb(r.pssPerSession)} kB`}\n`;
  }
  return out;
}

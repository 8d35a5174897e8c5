// A private Dovecot serving POP3 from a Maildir tree and a passwd-file, for benchmarks and
// integration tests: `dovecot -F -c <workdir>/dovecot.conf`, listening on 127.0.0.1 only, with
// its run, state, index, control and log files in a work directory of its own. The system
// Dovecot service is never touched.
//
// Choices (see README.md):
//  - `tuning: 'performance'` (the default) applies the CPU advice of Dovecot 2.3's performance
//    tuning guide: login processes in high-performance mode (service_count = 0,
//    process_min_avail = CPU count, a large client_limit), pop3 processes reused for up to 100
//    sessions (service_count = 100) with process_min_avail = CPU count, and
//    pop3_no_flag_updates = yes. `tuning: 'default'` keeps Dovecot's stock behaviour: a login
//    process and a pop3 process per connection, and \Seen flags written on RETR.
//  - pop3_lock_session = yes, mail_fsync = optimized (Dovecot's default), auth_cache_size = 0
//    (Dovecot's default) unless configured.
//  - Dovecot's indexes and dovecot-uidlist go to the work directory (INDEX= and CONTROL=), so the
//    shared tree only sees what any Maildir reader would: messages moved from new/ to cur/ and
//    flags in their names.
//  - Dovecot refuses to access mail as root, so when run as root, mail processes run as `nobody`
//    and the Maildir tree is chowned to it (root-run servers still read it as before).
//
// CLI: tsx loadtest/src/dovecot.ts --root DIR --passwd-file FILE [--port N] [--tls] ...
//      (runs until interrupted)

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError, intOption, isMain, runCli } from './cli-util.js';
import { processTree } from './procstat.js';
import { ServerExitedError, exited, freePort, stopProcess, waitForGreeting } from './server-process.js';

export const DOVECOT_BINARY = '/usr/sbin/dovecot';

export interface DovecotVersion {
  raw: string;
  major: number;
  minor: number;
}

export function dovecotVersion(binary = DOVECOT_BINARY): DovecotVersion {
  let raw: string;
  try {
    raw = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`cannot run ${binary} --version: is dovecot-core installed?`, { cause: err });
  }
  const m = /^(\d+)\.(\d+)/.exec(raw);
  if (m === null) throw new Error(`unrecognised Dovecot version: ${raw}`);
  return { raw, major: Number(m[1]), minor: Number(m[2]) };
}

export interface DovecotOptions {
  /** Root of the Maildir tree: mail is at `<mailRoot>/<user>/Maildir`. */
  mailRoot: string;
  /** passwd-file with `user:{SCHEME}secret` lines (Dovecot reads a copy taken at start). */
  passwdFile: string;
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** Plain POP3 (with STLS when `tls`) port; 0 or absent picks a free one. */
  port?: number;
  /** Enable TLS: a generated self-signed certificate, STLS on `port`, implicit TLS on `tlsPort`. */
  tls?: boolean;
  /** Implicit-TLS port when `tls`; 0 or absent picks a free one. */
  tlsPort?: number;
  /** Work directory; a new temporary one by default (removed by stop()). */
  workDir?: string;
  /** auth_cache_size, e.g. '0' (no cache, Dovecot's default) or '10M'. */
  authCacheSize?: string;
  /** auth_cache_ttl, e.g. '1 hour'. */
  authCacheTtl?: string;
  /** 'performance' (default): Dovecot's CPU tuning advice; 'default': Dovecot's stock settings. */
  tuning?: 'performance' | 'default';
  /** process_min_avail for pop3-login and pop3 with 'performance' tuning. Default: CPU count. */
  spareProcesses?: number;
  /** Most concurrent POP3 sessions (pop3 process_limit, client limits). Default 2048. */
  maxSessions?: number;
  /** mail_fsync: optimized (default), always or never. */
  mailFsync?: 'optimized' | 'always' | 'never';
  /** login_trusted_networks, e.g. ['127.0.0.0/8']. Default none. */
  trustedNetworks?: string[];
  /** Extra lines appended to dovecot.conf. */
  extraConfig?: string;
  /** Time allowed from spawn to the first greeting. Default 30 s. */
  startTimeoutMs?: number;
  binary?: string;
}

export interface DovecotInstance {
  host: string;
  port: number;
  /** Implicit-TLS port, or null without TLS. */
  tlsPort: number | null;
  /** PID of the master process (the root of the process tree). */
  pid: number;
  workDir: string;
  configFile: string;
  logFile: string;
  /** PEM certificate to trust for TLS, or null. */
  caFile: string | null;
  version: DovecotVersion;
  /** Settles when the master process exits, for whatever reason. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops Dovecot and every process it started; removes a temporary work directory. */
  stop(): Promise<void>;
}

interface MailIdentity {
  uid: number;
  gid: number;
  /** Unprivileged users for Dovecot's own processes. */
  internalUser: string;
  loginUser: string;
}

function lookupUser(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no /etc/passwd
  }
  return null;
}

function mailIdentity(): MailIdentity {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) {
    const name = os.userInfo().username;
    return { uid, gid, internalUser: name, loginUser: name };
  }
  const nobody = lookupUser('nobody') ?? { uid: 65534, gid: 65534 };
  const internalUser = lookupUser('dovecot') !== null ? 'dovecot' : 'nobody';
  const loginUser = lookupUser('dovenull') !== null ? 'dovenull' : 'nobody';
  return { ...nobody, internalUser, loginUser };
}

function q(value: string): string {
  // Dovecot config values may be quoted; paths with spaces need it.
  if (/^[A-Za-z0-9_./%:=,<-]+$/.test(value)) return value;
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export interface ConfigInputs {
  version: DovecotVersion;
  host: string;
  port: number;
  tlsPort: number | null;
  workDir: string;
  mailRoot: string;
  passwdFile: string;
  identity: MailIdentity;
  greeting: string;
  certFile: string | null;
  keyFile: string | null;
  opts: DovecotOptions;
}

/** dovecot.conf for Dovecot 2.3. */
export function dovecotConfig23(c: ConfigInputs): string {
  const o = c.opts;
  const maxSessions = o.maxSessions ?? 2048;
  const clientLimit = Math.max(1000, maxSessions + 256);
  const spare = o.spareProcesses ?? os.availableParallelism();
  const performance = (o.tuning ?? 'performance') === 'performance';
  const w = c.workDir;
  const lines = [
    '# Private benchmark instance; generated, do not edit.',
    'protocols = pop3',
    `listen = ${c.host}`,
    `base_dir = ${q(join(w, 'run'))}`,
    `state_dir = ${q(join(w, 'state'))}`,
    `instance_name = postern-bench-${c.port}`,
    `log_path = ${q(join(w, 'dovecot.log'))}`,
    `info_log_path = ${q(join(w, 'dovecot.log'))}`,
    `login_greeting = ${c.greeting}`,
    'shutdown_clients = yes',
    `default_internal_user = ${c.identity.internalUser}`,
    `default_login_user = ${c.identity.loginUser}`,
    `default_client_limit = ${clientLimit}`,
    `default_process_limit = ${Math.max(100, spare + 16)}`,
    '',
    '# Authentication: plaintext allowed (benchmark on loopback), passwd-file, optional cache.',
    'disable_plaintext_auth = no',
    'auth_mechanisms = plain login',
    `auth_cache_size = ${o.authCacheSize ?? '0'}`,
    `auth_cache_ttl = ${o.authCacheTtl ?? '1 hour'}`,
    `login_trusted_networks = ${(o.trustedNetworks ?? []).join(' ')}`,
    'passdb {',
    '  driver = passwd-file',
    `  args = scheme=PLAIN username_format=%u ${q(c.passwdFile)}`,
    '}',
    'userdb {',
    '  driver = static',
    `  args = uid=${c.identity.uid} gid=${c.identity.gid} home=${q(join(c.mailRoot, '%u'))}`,
    '}',
    '',
    '# Mail: the shared Maildir tree; indexes and uidlists stay in the work directory.',
    `mail_location = maildir:${join(c.mailRoot, '%u', 'Maildir')}:INDEX=${join(w, 'index', '%u')}:CONTROL=${join(w, 'control', '%u')}`,
    `mail_uid = ${c.identity.uid}`,
    `mail_gid = ${c.identity.gid}`,
    `first_valid_uid = ${Math.min(500, c.identity.uid)}`,
    `mail_fsync = ${o.mailFsync ?? 'optimized'}`,
    'pop3_lock_session = yes',
    `pop3_no_flag_updates = ${performance ? 'yes' : 'no'}`,
    '',
    c.certFile !== null
      ? [
          'ssl = yes',
          `ssl_cert = <${c.certFile}`,
          `ssl_key = <${c.keyFile}`,
          'ssl_min_protocol = TLSv1.2',
        ].join('\n')
      : 'ssl = no',
    '',
    'service pop3-login {',
    '  inet_listener pop3 {',
    `    address = ${c.host}`,
    `    port = ${c.port}`,
    '  }',
    '  inet_listener pop3s {',
    `    address = ${c.host}`,
    `    port = ${c.tlsPort ?? 0}`,
    '    ssl = yes',
    '  }',
    ...(performance
      ? [
          '  # High-performance mode: each login process serves many connections.',
          '  service_count = 0',
          `  process_min_avail = ${spare}`,
          `  client_limit = ${clientLimit}`,
          '  vsz_limit = 1G',
        ]
      : ['  # High-security mode: one login process per connection.', '  service_count = 1', `  process_limit = ${maxSessions}`]),
    '}',
    'service pop3 {',
    `  process_limit = ${maxSessions}`,
    ...(performance
      ? ['  # Reuse a mail process for up to 100 sessions (all users share one uid).', '  service_count = 100', `  process_min_avail = ${spare}`]
      : []),
    '}',
    'service anvil {',
    `  client_limit = ${clientLimit + maxSessions}`,
    '}',
    'service auth {',
    `  client_limit = ${clientLimit + maxSessions}`,
    '}',
    '',
    o.extraConfig ?? '',
  ];
  return lines.join('\n') + '\n';
}

function generateCertificate(dir: string): { certFile: string; keyFile: string } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { certFile, keyFile };
}

/** Makes the tree readable and writable by the mail uid (only needed when that differs from ours). */
function prepareTree(mailRoot: string, identity: MailIdentity): void {
  const uid = process.getuid?.() ?? 0;
  if (identity.uid === uid) return;
  // Every directory above the tree must be traversable by the mail uid.
  for (let d = mailRoot; ; d = dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) {
      if (d === mailRoot) chmodSync(d, mode | 0o755);
      else throw new Error(`${d} is not searchable by others: Dovecot's mail processes (uid ${identity.uid}) cannot reach ${mailRoot}`);
    }
    if (dirname(d) === d) break;
  }
  execFileSync('chown', ['-R', `${identity.uid}:${identity.gid}`, mailRoot]);
}

function tailOf(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a private Dovecot and resolves once it greets on its port. */
export async function startDovecot(opts: DovecotOptions): Promise<DovecotInstance> {
  const version = dovecotVersion(opts.binary);
  if (!(version.major === 2 && version.minor === 3)) {
    throw new Error(
      `Dovecot ${version.raw} is installed; this harness generates configuration for Dovecot 2.3 ` +
        '(2.4 changed the configuration syntax throughout)',
    );
  }
  const host = opts.host ?? '127.0.0.1';
  const mailRoot = resolve(opts.mailRoot);
  const passwdFile = resolve(opts.passwdFile);
  if (!existsSync(passwdFile)) throw new Error(`passwd-file ${passwdFile} does not exist`);
  const ownWorkDir = opts.workDir === undefined;
  const workDir = ownWorkDir ? mkdtempSync(join(os.tmpdir(), 'postern-dovecot-')) : resolve(opts.workDir as string);
  mkdirSync(workDir, { recursive: true });
  chmodSync(workDir, 0o755);
  const identity = mailIdentity();
  prepareTree(mailRoot, identity);
  // Dovecot's auth process runs unprivileged: give it a copy it can surely read.
  const passwdCopy = join(workDir, 'passwd');
  copyFileSync(passwdFile, passwdCopy);
  chmodSync(passwdCopy, 0o644);
  for (const sub of ['run', 'state']) mkdirSync(join(workDir, sub), { recursive: true, mode: 0o755 });
  for (const sub of ['index', 'control']) {
    mkdirSync(join(workDir, sub), { recursive: true, mode: 0o755 });
    chownSync(join(workDir, sub), identity.uid, identity.gid);
  }
  const cert = opts.tls === true ? generateCertificate(join(workDir, 'tls')) : null;
  const configFile = join(workDir, 'dovecot.conf');
  const logFile = join(workDir, 'dovecot.log');
  const pickPort = opts.port === undefined || opts.port === 0;
  const pickTlsPort = opts.tls === true && (opts.tlsPort === undefined || opts.tlsPort === 0);

  let lastError: unknown = null;
  for (let attempt = 0; attempt < (pickPort || pickTlsPort ? 3 : 1); attempt++) {
    const port = pickPort ? await freePort(host) : (opts.port as number);
    const tlsPort = opts.tls === true ? (pickTlsPort ? await freePort(host) : (opts.tlsPort as number)) : null;
    const greeting = `postern-bench ${randomBytes(6).toString('hex')} ready.`;
    writeFileSync(
      configFile,
      dovecotConfig23({
        version, host, port, tlsPort, workDir, mailRoot, passwdFile: passwdCopy, identity, greeting,
        certFile: cert?.certFile ?? null, keyFile: cert?.keyFile ?? null, opts,
      }),
      { mode: 0o644 },
    );
    writeFileSync(logFile, '');
    const child = spawn(opts.binary ?? DOVECOT_BINARY, ['-F', '-c', configFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (stderr.length < 16_384) stderr += d;
    });
    const killOnExit = (): void => {
      // The master stops its own children on SIGTERM.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    };
    process.once('exit', killOnExit);
    try {
      await waitForGreeting({ host, port, child, greetingIncludes: greeting, timeoutMs: opts.startTimeoutMs ?? 30_000 });
    } catch (err) {
      await stopProcess(child, { graceMs: 5_000 });
      process.off('exit', killOnExit);
      const detail = `${stderr.trim()}\n${tailOf(logFile)}`.trim();
      lastError = new Error(`Dovecot did not start: ${(err as Error).message}\n${detail}`, { cause: err });
      if (err instanceof ServerExitedError && /Address already in use/.test(detail)) continue;
      break;
    }
    const pid = child.pid as number;
    let stopped: Promise<void> | null = null;
    return {
      host,
      port,
      tlsPort,
      pid,
      workDir,
      configFile,
      logFile,
      caFile: cert?.certFile ?? null,
      version,
      exited: exited(child),
      stop: () => {
        stopped ??= stopDovecot(child, pid).then(() => {
          process.off('exit', killOnExit);
          if (ownWorkDir) rmSync(workDir, { recursive: true, force: true });
        });
        return stopped;
      },
    };
  }
  if (ownWorkDir) rmSync(workDir, { recursive: true, force: true });
  throw lastError;
}

async function stopDovecot(child: ChildProcess, pid: number): Promise<void> {
  const tree = processTree(pid).filter((p) => p !== pid);
  await stopProcess(child, { graceMs: 10_000 });
  // The master stops its children; make sure none of the ones it had is left behind.
  for (const p of tree) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'latin1');
    } catch {
      continue; // gone
    }
    if (cmd.startsWith('dovecot')) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

const USAGE = `Usage: tsx loadtest/src/dovecot.ts --root DIR --passwd-file FILE [options]
Starts a private Dovecot (POP3 only) on 127.0.0.1 and runs until interrupted.
  --root DIR             Maildir tree root (DIR/<user>/Maildir)
  --passwd-file FILE     passwd-file (default DIR/passwd)
  --port N               plain POP3 port (default: a free one)
  --tls                  also TLS: STLS on --port, implicit TLS on --tls-port
  --tls-port N           implicit-TLS port (default: a free one)
  --auth-cache-size S    auth_cache_size (default 0)
  --tuning T             performance (default: Dovecot's tuning advice) or default
  --mail-fsync M         optimized (default), always, never
  --trusted-networks L   login_trusted_networks, space-separated
  --work-dir DIR         keep config, log and indexes here
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      root: { type: 'string' },
      'passwd-file': { type: 'string' },
      port: { type: 'string' },
      tls: { type: 'boolean' },
      'tls-port': { type: 'string' },
      'auth-cache-size': { type: 'string' },
      tuning: { type: 'string' },
      'mail-fsync': { type: 'string' },
      'trusted-networks': { type: 'string' },
      'work-dir': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.root === undefined) throw new UsageError('--root is required');
  const tuning = values.tuning ?? 'performance';
  if (tuning !== 'performance' && tuning !== 'default') throw new UsageError('--tuning is performance or default');
  const fsync = values['mail-fsync'] ?? 'optimized';
  if (!['optimized', 'always', 'never'].includes(fsync)) throw new UsageError('--mail-fsync is optimized, always or never');
  const dc = await startDovecot({
    mailRoot: values.root,
    passwdFile: values['passwd-file'] ?? join(values.root, 'passwd'),
    port: intOption('port', values.port, 0),
    tls: values.tls,
    tlsPort: intOption('tls-port', values['tls-port'], 0),
    authCacheSize: values['auth-cache-size'],
    tuning,
    mailFsync: fsync as 'optimized' | 'always' | 'never',
    trustedNetworks: values['trusted-networks']?.split(/\s+/).filter((x) => x !== ''),
    workDir: values['work-dir'],
  });
  process.stdout.write(
    `Dovecot ${dc.version.raw} pid ${dc.pid} on ${dc.host}:${dc.port}` +
      (dc.tlsPort === null ? '' : ` (implicit TLS on ${dc.tlsPort}, CA ${dc.caFile})`) +
      `\nconfig ${dc.configFile}\nlog    ${dc.logFile}\nCtrl-C stops it.\n`,
  );
  const why = await Promise.race([
    new Promise<string | null>((resolve) => {
      process.once('SIGINT', () => resolve(null));
      process.once('SIGTERM', () => resolve(null));
    }),
    dc.exited.then((e) => `Dovecot exited by itself (${e.signal ?? `code ${e.code}`}):\n${tailOf(dc.logFile)}`),
  ]);
  if (why !== null) process.stderr.write(`${why}\n`);
  await dc.stop();
  return why === null ? 0 : 1;
}

if (isMain(import.meta.url)) runCli(main, USAGE);

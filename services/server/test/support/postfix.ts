/**
 * A private Postfix instance for tests: its own config, queue and data directories in a temp
 * dir, smtpd on a free loopback port, the test domains relayed over LMTP to our intake. The
 * master daemon runs in the foreground as our child (`master -s`, stopped by its PID) and logs
 * to a file in the temp dir (through postlogd), which tests poll for the line they expect. Postfix
 * runs as root and drops to the `postfix` user, as Debian installs it.
 */
import { execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess, findProgram, freePort } from '@postern/testkit';

export interface PostfixOptions {
  /** Domains Postfix accepts from anyone and hands to `lmtpPort`. */
  readonly domains: readonly string[];
  readonly lmtpPort: number;
  /** Domains Postfix accepts from anyone and hands over SMTP to `smtpRelayPort`. */
  readonly smtpDomains?: readonly string[];
  readonly smtpRelayPort?: number;
  /** Extra main.cf settings. */
  readonly main?: Record<string, string>;
}

export interface Postfix {
  readonly smtpPort: number;
  readonly configDir: string;
  /** Every log line so far. */
  lines(): Promise<string[]>;
  /** The `nth` (default first) log line, logged or to come, matching `pattern`; rejects after the deadline. */
  waitForLog(pattern: RegExp, timeoutMs?: number, nth?: number): Promise<RegExpMatchArray>;
  /** `postqueue -f`: attempt every deferred message now. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

const DAEMON_DIR = '/usr/lib/postfix/sbin';

/** One service per line; chroot off (column 5) so no files need copying into the queue dir. */
function masterCf(smtpPort: number): string {
  return [
    `127.0.0.1:${smtpPort} inet n - n - - smtpd`,
    'pickup    unix  n - n 60    1 pickup',
    'cleanup   unix  n - n -     0 cleanup',
    'qmgr      unix  n - n 300   1 qmgr',
    'rewrite   unix  - - n -     - trivial-rewrite',
    'bounce    unix  - - n -     0 bounce',
    'defer     unix  - - n -     0 bounce',
    'trace     unix  - - n -     0 bounce',
    'verify    unix  - - n -     1 verify',
    'flush     unix  n - n 1000? 0 flush',
    'proxymap  unix  - - n -     - proxymap',
    'showq     unix  n - n -     - showq',
    'error     unix  - - n -     - error',
    'retry     unix  - - n -     - error',
    'discard   unix  - - n -     - discard',
    'lmtp      unix  - - n -     - lmtp',
    'smtp      unix  - - n -     - smtp',
    'anvil     unix  - - n -     1 anvil',
    'scache    unix  - - n -     1 scache',
    'postlog   unix-dgram n - n - 1 postlogd',
    '',
  ].join('\n');
}

function run(program: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(program, [...args], (error, stdout, stderr) => {
      if (error) reject(new Error(`${program} ${args.join(' ')}: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export async function startPostfix(options: PostfixOptions): Promise<Postfix> {
  if (userInfo().uid !== 0) throw new Error('the Postfix tests run Postfix as root (it drops to the postfix user): run them as root');
  const postfix = findProgram('postfix', 'postfix');
  const master = findProgram('master', 'postfix', [DAEMON_DIR]);
  const postqueue = findProgram('postqueue', 'postfix');
  const postfixUid = Number((await run('id', ['-u', 'postfix'])).trim());
  const base = await mkdtemp(join(tmpdir(), 'postern-postfix-'));
  // Postfix daemons, running as `postfix`, must be able to reach their directories under it.
  await chmod(base, 0o755);
  const configDir = join(base, 'etc');
  const queueDir = join(base, 'queue');
  const dataDir = join(base, 'data');
  await mkdir(configDir);
  await mkdir(queueDir);
  await mkdir(dataDir);
  await chown(dataDir, postfixUid, 0);
  const smtpPort = await freePort();
  const main: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: queueDir,
    data_directory: dataDir,
    meta_directory: '/etc/postfix',
    daemon_directory: DAEMON_DIR,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    myhostname: 'mta.test',
    mydomain: 'mta.test',
    myorigin: 'mta.test',
    mydestination: '',
    mynetworks: '127.0.0.0/8',
    relay_domains: [...options.domains, ...(options.smtpDomains ?? [])].join(', '),
    transport_maps: `texthash:${join(configDir, 'transport')}`,
    // Nothing leaves the test: mail for other domains (bounce notices too) is discarded.
    default_transport: 'discard:no mail leaves the test',
    // Leave the submitted headers alone (no rewriting of addresses, nothing added but Received:).
    local_header_rewrite_clients: '',
    alias_maps: '',
    alias_database: '',
    biff: 'no',
    smtputf8_enable: 'no',
    // A file, not /dev/stdout: Node gives a child a socket for stdout, which postlogd cannot open.
    maillog_file: join(base, 'maillog'),
    maillog_file_prefixes: base,
    ...options.main,
  };
  await writeFile(
    join(configDir, 'main.cf'),
    Object.entries(main)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n') + '\n',
  );
  await writeFile(join(configDir, 'master.cf'), masterCf(smtpPort));
  const routes = [
    ...options.domains.map((d) => `${d} lmtp:inet:127.0.0.1:${options.lmtpPort}`),
    ...(options.smtpDomains ?? []).map((d) => `${d} smtp:[127.0.0.1]:${options.smtpRelayPort}`),
  ];
  await writeFile(join(configDir, 'transport'), routes.join('\n') + '\n');
  // Creates the queue's subdirectories with their owners and modes, and fails on a bad config.
  await run(postfix, ['-c', configDir, 'check']);

  const logFile = join(base, 'maillog');
  const lines = async (): Promise<string[]> =>
    (await readFile(logFile, 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? '' : Promise.reject(e)))).split('\n');
  const proc = await ManagedProcess.start({ name: 'postfix', program: master, args: ['-c', configDir, '-s'], port: smtpPort });
  return {
    smtpPort,
    configDir,
    lines,
    async waitForLog(pattern, timeoutMs = 20_000, nth = 1) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const all = await lines();
        let seen = 0;
        for (const line of all) {
          const m = line.match(pattern);
          if (m && ++seen === nth) return m;
        }
        if (Date.now() > deadline) throw new Error(`no Postfix log line matching ${pattern} within ${timeoutMs} ms; last lines:\n${all.slice(-15).join('\n')}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async flush() {
      await run(postqueue, ['-c', configDir, '-f']);
    },
    async stop() {
      await proc.stop();
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** swaks from Debian, submitting as `sender@remote.test` from `client.test`. */
export interface Swaks {
  readonly code: number;
  readonly output: string;
}

export function swaks(args: readonly string[]): Promise<Swaks> {
  return new Promise((resolve, reject) => {
    execFile('swaks', ['--helo', 'client.test', '--from', 'sender@remote.test', ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (error as { code?: unknown }).code : 0;
      if (typeof code !== 'number') reject(new Error(`swaks did not run: ${error?.message}\n${stderr}`));
      else resolve({ code, output: stdout + stderr });
    });
  });
}

/** swaks ends DATA with CRLF . CRLF after the file's bytes, so the file leaves out the message's final CRLF. */
export async function writeForSwaks(file: string, bytes: Buffer): Promise<string> {
  assert.ok(bytes.subarray(-2).equals(Buffer.from('\r\n')), 'a message ends with CRLF');
  await writeFile(file, bytes.subarray(0, -2));
  return file;
}


/**
 * The `postern` operator CLI: argument parsing, the subcommand table, and the user commands.
 * `run()` takes its streams and environment as arguments so it can be driven from tests;
 * main.ts wires it to the process.
 */
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import {
  AccountsError,
  BCRYPT_MAX_PASSWORD_BYTES,
  DEFAULT_SCHEME,
  HASH_SCHEMES,
  hashPassword,
  readPasswdFileDocument,
  updatePasswdFile,
  usernameProblem,
  type HashScheme,
} from '@postern/accounts';
import { MaildirStore, maildirPathFromTemplate } from '@postern/mailstore';
import { loadServerConfig, openBackends, type Backends } from '@postern/server';
import { Metrics, createLogger } from '@postern/telemetry';
import { Interrupted, readPassword, type PasswordInput } from './password-input.js';

export interface CliIo {
  readonly stdin: PasswordInput;
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

/** Bad command line: exit 2 with a pointer to --help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The command could not do its job: exit 1. */
export class CommandFailure extends Error {
  override readonly name = 'CommandFailure';
}

export interface Context {
  readonly io: CliIo;
  /** Positional arguments after the command name. */
  readonly args: readonly string[];
  readonly passwdFile: string;
  readonly scheme: HashScheme | undefined;
}

export interface Command {
  /** Words that select it, e.g. `user add`. */
  readonly name: string;
  /** Positional arguments, for usage lines. */
  readonly params: readonly string[];
  readonly summary: string;
  /** Command-specific options it accepts (global ones are always accepted). */
  readonly options: readonly ('scheme')[];
  run(ctx: Context): Promise<void>;
}

function print(stream: Writable, text: string): void {
  stream.write(`${text}\n`);
}

function checkName(name: string): void {
  const problem = usernameProblem(name);
  if (problem !== null) throw new UsageError(`invalid user name: ${problem}`);
}

async function newPasswordField(ctx: Context): Promise<{ field: string; scheme: HashScheme }> {
  const scheme = ctx.scheme ?? DEFAULT_SCHEME;
  const password = await readPassword(ctx.io.stdin, ctx.io.stderr);
  if (password === null) throw new CommandFailure('no password on standard input');
  if (password.length === 0) throw new CommandFailure('empty password');
  if (password.includes('\0')) throw new CommandFailure('password contains a NUL character');
  if (scheme === 'BLF-CRYPT' && Buffer.byteLength(password, 'utf8') > BCRYPT_MAX_PASSWORD_BYTES) {
    print(ctx.io.stderr, `postern: warning: BLF-CRYPT uses only the first ${BCRYPT_MAX_PASSWORD_BYTES} bytes of the password`);
  }
  return { field: await hashPassword(password, scheme), scheme };
}

const userAdd: Command = {
  name: 'user add',
  params: ['NAME'],
  summary: 'add a user; the password is read from standard input',
  options: ['scheme'],
  async run(ctx) {
    const name = ctx.args[0]!;
    checkName(name);
    // Fail before asking for a password the command could not use.
    if ((await readPasswdFileDocument(ctx.passwdFile)).has(name)) throw new CommandFailure(`user ${name} already exists`);
    const { field, scheme } = await newPasswordField(ctx);
    await updatePasswdFile(ctx.passwdFile, (doc) => doc.add(name, field));
    print(ctx.io.stdout, `added user ${name} (${scheme}) to ${ctx.passwdFile}`);
  },
};

const userPasswd: Command = {
  name: 'user passwd',
  params: ['NAME'],
  summary: "change a user's password; the password is read from standard input",
  options: ['scheme'],
  async run(ctx) {
    const name = ctx.args[0]!;
    if (!(await readPasswdFileDocument(ctx.passwdFile)).has(name)) throw new CommandFailure(`no user ${name} in ${ctx.passwdFile}`);
    const { field, scheme } = await newPasswordField(ctx);
    await updatePasswdFile(ctx.passwdFile, (doc) => doc.setPassword(name, field));
    print(ctx.io.stdout, `changed the password of ${name} (${scheme})`);
  },
};

const userDel: Command = {
  name: 'user del',
  params: ['NAME'],
  summary: 'remove a user (their mail stays in the store)',
  options: [],
  async run(ctx) {
    const name = ctx.args[0]!;
    await updatePasswdFile(ctx.passwdFile, (doc) => doc.remove(name));
    print(ctx.io.stdout, `removed user ${name}`);
  },
};

const userList: Command = {
  name: 'user list',
  params: [],
  summary: 'list user names, one per line',
  options: [],
  async run(ctx) {
    const doc = await readPasswdFileDocument(ctx.passwdFile);
    for (const user of doc.users()) print(ctx.io.stdout, user.username);
  },
};

/** Maildir template as the server resolves it: $MAILDIR, else $DATA_DIR/mail/%u/Maildir. */
function maildirTemplate(io: CliIo): string {
  return io.env['MAILDIR'] || resolve(io.cwd, io.env['DATA_DIR'] || './var', 'mail/%u/Maildir');
}

const mailboxList: Command = {
  name: 'mailbox list',
  params: [],
  summary: 'list each user with message count and octets (CRLF sizes, as POP3 LIST reports them)',
  options: [],
  async run(ctx) {
    const doc = await readPasswdFileDocument(ctx.passwdFile);
    const template = maildirTemplate(ctx.io);
    const store = new MaildirStore({ pathFor: (m) => resolve(ctx.io.cwd, maildirPathFromTemplate(template, m.username)) });
    const rows: string[][] = [['USER', 'MESSAGES', 'OCTETS']];
    for (const user of doc.users()) {
      const { count, octets } = await store.stat({ id: user.username.toLowerCase(), username: user.username });
      rows.push([user.username, String(count), String(octets)]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) print(ctx.io.stdout, r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd());
  },
};

/**
 * The configured store's backends, opened like the server opens them (same settings, same
 * environment); only STORE=s3 has an index to rebuild or objects to sweep.
 */
async function clusterBackends(ctx: Context, what: string): Promise<Backends> {
  let config;
  try {
    config = loadServerConfig({ env: ctx.io.env });
  } catch (e) {
    throw new CommandFailure((e as Error).message);
  }
  if (config.STORE !== 's3') throw new CommandFailure(`${what} needs STORE=s3 (the configured store is ${config.STORE}, which keeps no index)`);
  const logger = createLogger({ service: 'postern-cli', level: 'warn', destination: ctx.io.stderr, format: 'json' });
  return openBackends(config, logger, new Metrics({ processMetrics: false, disabled: true }), null);
}

const storeSweep: Command = {
  name: 'store sweep',
  params: [],
  summary: 'finish pending deletions and remove orphan objects older than SWEEP_GRACE_S, now (STORE=s3)',
  options: [],
  async run(ctx) {
    const backends = await clusterBackends(ctx, 'store sweep');
    try {
      const report = await backends.sweepOnce();
      print(ctx.io.stdout, JSON.stringify(report));
    } finally {
      await backends.close();
    }
  },
};

const mailboxRebuild: Command = {
  name: 'mailbox rebuild',
  params: ['MAILBOX-ID'],
  summary: 'rebuild a mailbox index from the S3 listing (disaster recovery; refused while the maildrop is in use)',
  options: [],
  async run(ctx) {
    const backends = await clusterBackends(ctx, 'mailbox rebuild');
    try {
      const report = await backends.rebuild(ctx.args[0]!);
      print(ctx.io.stdout, JSON.stringify(report));
    } catch (e) {
      throw new CommandFailure((e as Error).message);
    } finally {
      await backends.close();
    }
  },
};

/** The subcommand table: one row per command, looked up by its words. */
export const COMMANDS: readonly Command[] = [
  userAdd,
  userPasswd,
  userDel,
  userList,
  mailboxList,
  mailboxRebuild,
  storeSweep,
];

function usageLine(c: Command): string {
  const opts = c.options.includes('scheme') ? ` [--scheme ${HASH_SCHEMES.join('|')}]` : '';
  return `postern ${c.name}${c.params.map((p) => ` ${p}`).join('')}${opts}`;
}

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name}${c.params.map((p) => ` ${p}`).join('')}`.length));
  const rows = COMMANDS.map((c) => `  ${`${c.name}${c.params.map((p) => ` ${p}`).join('')}`.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: postern [--passwd-file PATH] COMMAND [ARGS]',
    '',
    'Commands:',
    ...rows,
    '',
    'Options:',
    '  --passwd-file PATH  the passwd-file to edit (default: $PASSWD_FILE, else $DATA_DIR/passwd,',
    '                      with DATA_DIR defaulting to ./var)',
    `  --scheme SCHEME     password scheme for user add/passwd (default ${DEFAULT_SCHEME}):`,
    `                      ${HASH_SCHEMES.join(', ')}`,
    '  -h, --help          show this help, or a command\'s usage with COMMAND --help',
    '',
    'mailbox list reads $MAILDIR (default $DATA_DIR/mail/%u/Maildir), like the server.',
    'mailbox rebuild and store sweep read the server\'s settings (STORE=s3, S3_*, REDIS_*) from the',
    'environment or CONFIG_FILE. MAILBOX-ID is the mailbox identity: the lower-cased login name for',
    'password-file users, the LDAP_MAILBOX_ATTRIBUTE value for directory users.',
    '',
    'Passwords are never taken from the command line. With a terminal on standard input,',
    'postern prompts twice without echo; otherwise it reads the first line of standard input.',
    '',
    'Exit status: 0 success, 1 failure, 2 usage error.',
  ].join('\n');
}

function passwdFilePath(io: CliIo, option: string | undefined): string {
  const explicit = option ?? (io.env['PASSWD_FILE'] || undefined);
  if (explicit !== undefined) return resolve(io.cwd, explicit);
  return resolve(io.cwd, io.env['DATA_DIR'] || './var', 'passwd');
}

function parseScheme(value: string | undefined): HashScheme | undefined {
  if (value === undefined) return undefined;
  const upper = value.toUpperCase();
  const scheme = HASH_SCHEMES.find((s) => s === upper);
  if (scheme === undefined) throw new UsageError(`unknown scheme ${value} (choose from ${HASH_SCHEMES.join(', ')})`);
  return scheme;
}

function findCommand(positionals: readonly string[]): { command: Command; args: string[] } | null {
  let best: Command | null = null;
  for (const c of COMMANDS) {
    const words = c.name.split(' ');
    if (words.every((w, i) => positionals[i] === w) && (best === null || words.length > best.name.split(' ').length)) best = c;
  }
  if (best === null) return null;
  return { command: best, args: positionals.slice(best.name.split(' ').length) };
}

/** Run the CLI; resolves to the exit status. Never throws. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...argv],
        options: {
          'passwd-file': { type: 'string' },
          scheme: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const { values, positionals } = parsed;
    const found = findCommand(positionals);
    if (values.help) {
      print(io.stdout, found ? `Usage: ${usageLine(found.command)}\n\n${found.command.summary}` : helpText());
      return EXIT_OK;
    }
    if (positionals.length === 0) throw new UsageError('missing command');
    if (found === null) {
      const group = COMMANDS.filter((c) => c.name.split(' ')[0] === positionals[0]);
      if (group.length > 0 && positionals.length === 1) {
        throw new UsageError(`missing subcommand; one of: ${group.map((c) => c.name).join(', ')}`);
      }
      throw new UsageError(`unknown command: ${positionals.slice(0, 2).join(' ')}`);
    }
    const { command, args } = found;
    if (args.length !== command.params.length) {
      throw new UsageError(`${command.name}: expected ${command.params.length === 0 ? 'no arguments' : command.params.join(' ')}\nUsage: ${usageLine(command)}`);
    }
    if (values.scheme !== undefined && !command.options.includes('scheme')) {
      throw new UsageError(`${command.name} does not take --scheme`);
    }
    const ctx: Context = {
      io,
      args,
      passwdFile: passwdFilePath(io, values['passwd-file']),
      scheme: parseScheme(values.scheme),
    };
    await command.run(ctx);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof UsageError) {
      print(io.stderr, `postern: ${e.message}\nTry 'postern --help'.`);
      return EXIT_USAGE;
    }
    if (e instanceof Interrupted) {
      print(io.stderr, 'postern: interrupted');
      return EXIT_INTERRUPTED;
    }
    if (e instanceof CommandFailure || e instanceof AccountsError) {
      print(io.stderr, `postern: ${e.message}`);
      return EXIT_FAILURE;
    }
    const err = e as NodeJS.ErrnoException;
    print(io.stderr, `postern: ${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`);
    return EXIT_FAILURE;
  }
}


/**
 * The Dovecot passwd-file format:
 *
 *     user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields
 *
 * Only `user` and the password field are required; the rest may be left empty or omitted.
 * Blank lines and lines starting with `#` are ignored. Extra fields are space separated
 * `key=value` (or bare `key`) items.
 */
import { AccountsError } from './errors.js';

export interface PasswdLine {
  readonly username: string;
  /** The raw password field (`{SCHEME}hash`), '' when empty. */
  readonly password: string;
  /** Fields 3 and up, unparsed (uid, gid, gecos, home, shell, extra fields). */
  readonly rest: readonly string[];
  readonly extraFields: ReadonlyMap<string, string>;
}

export type ParsedLine =
  | { readonly kind: 'blank' }
  | { readonly kind: 'comment' }
  | { readonly kind: 'entry'; readonly entry: PasswdLine }
  | { readonly kind: 'malformed'; readonly problem: string };

const USERNAME_MAX = 255;

/** Why a name cannot be a passwd-file user name, or null when it can. */
export function usernameProblem(name: string): string | null {
  if (name.length === 0) return 'empty user name';
  if (name.length > USERNAME_MAX) return `user name longer than ${USERNAME_MAX} characters`;
  if (name.startsWith('#')) return 'user name starts with #';
  // ':' separates fields; whitespace and control characters cannot come through POP3 USER.
  if (/[:\s\p{Cc}]/u.test(name)) return 'user name contains ":", whitespace or a control character';
  if (name.startsWith('@') || name.endsWith('@') || name.split('@').length > 2) return 'malformed user@domain';
  return null;
}

export function validateUsername(name: string): void {
  const problem = usernameProblem(name);
  if (problem !== null) throw new AccountsError('invalid-username', problem);
}

/** Lower-cased lookup key: logins and addresses match case-insensitively. */
export function userKey(name: string): string {
  return name.toLowerCase();
}

function parseExtraFields(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (text === undefined) return out;
  for (const item of text.split(/\s+/)) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) out.set(item.toLowerCase(), '');
    else out.set(item.slice(0, eq).toLowerCase(), item.slice(eq + 1));
  }
  return out;
}

/** Parse one line (without its line terminator). */
export function parsePasswdLine(raw: string): ParsedLine {
  const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  if (line.trim() === '') return { kind: 'blank' };
  if (line.startsWith('#')) return { kind: 'comment' };
  const fields = line.split(':');
  if (fields.length < 2) return { kind: 'malformed', problem: 'expected user:password' };
  const username = fields[0]!;
  const problem = usernameProblem(username);
  if (problem !== null) return { kind: 'malformed', problem };
  // Extra fields are field 8 onwards; a ':' inside them belongs to them.
  const rest = fields.slice(2);
  const extra = rest.length >= 6 ? rest.slice(5).join(':') : undefined;
  return {
    kind: 'entry',
    entry: { username, password: fields[1]!, rest, extraFields: parseExtraFields(extra) },
  };
}

/** Split file contents into lines, 1-based numbering as editors show them. */
export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

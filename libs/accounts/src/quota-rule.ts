/**
 * Dovecot quota rules as a userdb returns them (`quota_rule=*:storage=100M`, `quota_rule2=
 * *:messages=1000`; in a passwd-file used as passdb they carry the `userdb_` prefix). POP3 has one
 * mailbox, so only the `*` and `INBOX` rules count; rules for other mailboxes are ignored.
 *
 * Limits: `storage=` in kilobytes unless suffixed (`b`, `k`, `M`, `G`, `T`, powers of 1024),
 * `bytes=` in bytes unless suffixed, `messages=` a count. 0 means no limit, as in Dovecot.
 * Relative (`+10M`) and percentage (`50%`) limits depend on defaults this file does not know;
 * they are reported as problems and the rule is not used.
 */
import type { Quota } from './types.js';

const UNITS: Readonly<Record<string, number>> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** The extra field names that hold quota rules: `quota_rule`, `quota_rule2`, ..., with or without `userdb_`. */
export function isQuotaRuleField(name: string): boolean {
  return /^(?:userdb_)?quota_rule\d*$/.test(name);
}

function size(value: string, defaultUnit: number): number | string {
  const m = /^(\d{1,15})([bkmgt])?$/i.exec(value);
  if (!m) return `"${value}" is not a size (a number with an optional b/k/M/G/T suffix)`;
  const n = Number(m[1]) * (m[2] ? (UNITS[m[2].toLowerCase()] as number) : defaultUnit);
  return Number.isSafeInteger(n) ? n : `"${value}" is too large`;
}

/**
 * Applies the rules of one account in field order (a later rule for the same limit wins, as in
 * Dovecot's userdb override). Returns the quota (undefined when no rule set a limit) and the
 * problems found, each naming the field.
 */
export function parseQuotaRules(fields: ReadonlyMap<string, string>): { quota: Quota | undefined; problems: string[] } {
  const problems: string[] = [];
  let maxOctets: number | undefined;
  let maxMessages: number | undefined;
  for (const [name, rule] of fields) {
    if (!isQuotaRuleField(name)) continue;
    const colon = rule.indexOf(':');
    if (colon <= 0) {
      problems.push(`${name}: expected <mailbox>:<limit>=<value>, got "${rule}"`);
      continue;
    }
    const mailbox = rule.slice(0, colon);
    if (mailbox !== '*' && mailbox.toUpperCase() !== 'INBOX') continue;
    for (const limit of rule.slice(colon + 1).split(':')) {
      const eq = limit.indexOf('=');
      const key = (eq < 0 ? limit : limit.slice(0, eq)).toLowerCase();
      const value = eq < 0 ? '' : limit.slice(eq + 1);
      if (key === 'storage' || key === 'bytes') {
        const n = size(value, key === 'storage' ? 1024 : 1);
        if (typeof n === 'string') problems.push(`${name}: ${key}: ${n}`);
        else maxOctets = n;
      } else if (key === 'messages') {
        if (/^\d{1,15}$/.test(value)) maxMessages = Number(value);
        else problems.push(`${name}: messages: "${value}" is not a whole number`);
      } else if (key === 'ignore' || key === 'backend') {
        // `ignore` exempts a mailbox from quota: no limit for this rule; `backend` is Maildir++ only.
        if (key === 'ignore') maxOctets = maxMessages = 0;
      } else {
        problems.push(`${name}: unknown limit "${key}"`);
      }
    }
  }
  if (maxOctets === undefined && maxMessages === undefined) return { quota: undefined, problems };
  const quota: Quota = {
    ...(maxOctets === undefined ? {} : { maxOctets }),
    ...(maxMessages === undefined ? {} : { maxMessages }),
  };
  return { quota: Object.freeze(quota), problems };
}

/**
 * Account state from directory attributes and bind errors: Active Directory's
 * userAccountControl, msDS-User-Account-Control-Computed, accountExpires and the `data NNN`
 * of a failed bind; OpenLDAP ppolicy's pwdAccountLockedTime. The reasons go to the log only.
 */

/** userAccountControl / msDS-User-Account-Control-Computed flags. */
export const UAC_ACCOUNTDISABLE = 0x2;
export const UAC_LOCKOUT = 0x10;
export const UAC_PASSWORD_EXPIRED = 0x80_0000;

/** The attributes the backend asks for to judge an account's state. */
export const STATE_ATTRIBUTES = [
  'userAccountControl',
  'msDS-User-Account-Control-Computed',
  'accountExpires',
  'pwdAccountLockedTime',
] as const;

export type AttributeValues = Readonly<Record<string, string | Buffer | readonly (string | Buffer)[] | undefined>>;

export function firstValue(entry: AttributeValues, name: string): string | Buffer | undefined {
  const lower = name.toLowerCase();
  for (const key of Object.keys(entry)) {
    if (key.toLowerCase() !== lower) continue;
    const v = entry[key];
    if (Array.isArray(v)) return v[0] as string | Buffer | undefined;
    return v as string | Buffer | undefined;
  }
  return undefined;
}

export function allValues(entry: AttributeValues, name: string): (string | Buffer)[] {
  const lower = name.toLowerCase();
  for (const key of Object.keys(entry)) {
    if (key.toLowerCase() !== lower) continue;
    const v = entry[key];
    if (v === undefined) return [];
    return Array.isArray(v) ? [...(v as (string | Buffer)[])] : [v as string | Buffer];
  }
  return [];
}

function text(v: string | Buffer | undefined): string | undefined {
  return v === undefined ? undefined : typeof v === 'string' ? v : v.toString('utf8');
}

/** Windows FILETIME (100 ns ticks since 1601-01-01) to Unix ms. */
export function fileTimeToMs(ticks: bigint): number {
  return Number(ticks / 10_000n) - 11_644_473_600_000;
}

/**
 * Why Active Directory's attributes say this account may not log in, or null. `now` in ms.
 * Checked after a successful bind too (accountExpires and the computed flags are read fresh).
 */
export function refusalFromAttributes(entry: AttributeValues, now: number): string | null {
  const uac = text(firstValue(entry, 'userAccountControl'));
  if (uac !== undefined && /^-?\d+$/.test(uac) && (Number(uac) & UAC_ACCOUNTDISABLE) !== 0) return 'account disabled (userAccountControl 0x2)';
  const computed = text(firstValue(entry, 'msDS-User-Account-Control-Computed'));
  if (computed !== undefined && /^-?\d+$/.test(computed)) {
    const flags = Number(computed);
    if ((flags & UAC_LOCKOUT) !== 0) return 'account locked out (msDS-User-Account-Control-Computed 0x10)';
    if ((flags & UAC_PASSWORD_EXPIRED) !== 0) return 'password expired (msDS-User-Account-Control-Computed 0x800000)';
  }
  const expires = text(firstValue(entry, 'accountExpires'));
  if (expires !== undefined && /^\d+$/.test(expires)) {
    const ticks = BigInt(expires);
    // 0 and 0x7FFFFFFFFFFFFFFF both mean "never".
    if (ticks !== 0n && ticks !== 0x7fff_ffff_ffff_ffffn && fileTimeToMs(ticks) <= now) return 'account expired (accountExpires)';
  }
  return null;
}

/** pwdAccountLockedTime of an administrative lock: it never expires (draft-behera-ldap-password-policy). */
export const PPOLICY_PERMANENT_LOCK = '000001010000Z';

/**
 * OpenLDAP ppolicy's lock. ppolicy answers a locked account's bind with plain
 * invalidCredentials, so after a failed bind any pwdAccountLockedTime names the reason. After a
 * successful bind only the permanent administrative lock counts: a timed lock whose duration
 * has passed is still present until ppolicy clears it, and slapd let the bind through; and
 * slapd lets even an administrative lock through when the entry's policy has pwdLockout FALSE.
 */
export function ppolicyLock(entry: AttributeValues, bound: boolean): string | null {
  const locked = text(firstValue(entry, 'pwdAccountLockedTime'));
  if (locked === undefined || locked === '' || (bound && locked !== PPOLICY_PERMANENT_LOCK)) return null;
  return `account locked (ppolicy pwdAccountLockedTime ${locked})`;
}

/** AD (and Samba) sub-codes in the diagnostic message of a failed bind: `..., data 775, ...`. */
const AD_BIND_DATA: Readonly<Record<string, { readonly refused: boolean; readonly reason: string }>> = {
  '525': { refused: false, reason: 'user not found (AD data 525)' },
  '52e': { refused: false, reason: 'invalid credentials (AD data 52e)' },
  '530': { refused: true, reason: 'logon not permitted at this time (AD data 530)' },
  '531': { refused: true, reason: 'logon not permitted from this workstation (AD data 531)' },
  '532': { refused: true, reason: 'password expired (AD data 532)' },
  '533': { refused: true, reason: 'account disabled (AD data 533)' },
  '568': { refused: true, reason: 'too many security IDs (AD data 568)' },
  '701': { refused: true, reason: 'account expired (AD data 701)' },
  '773': { refused: true, reason: 'password must be changed (AD data 773)' },
  '775': { refused: true, reason: 'account locked out (AD data 775)' },
};

/** Classifies an invalidCredentials bind error from its diagnostic message; null when it carries no AD code. */
export function adBindFailure(message: string): { readonly refused: boolean; readonly reason: string } | null {
  const m = /\bdata ([0-9a-f]{3,8})\b/i.exec(message);
  if (!m) return null;
  return AD_BIND_DATA[(m[1] as string).toLowerCase()] ?? { refused: false, reason: `bind refused (AD data ${m[1]})` };
}

/** objectGUID bytes as the canonical GUID string (first three fields little-endian, as Windows prints it). */
export function formatGuid(bytes: Buffer): string {
  if (bytes.length !== 16) throw new RangeError(`objectGUID must be 16 bytes, got ${bytes.length}`);
  const h = bytes.toString('hex');
  const le = (from: number, to: number): string => {
    let s = '';
    for (let i = to - 2; i >= from; i -= 2) s += h.slice(i, i + 2);
    return s;
  };
  return `${le(0, 8)}-${le(8, 12)}-${le(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Mailbox quota arithmetic shared by the backends and the intake. 0 or absent: no limit. */
import { StoreError } from './errors.js';
import type { Quota } from './types.js';

export interface QuotaUsage {
  readonly count: number;
  /** Canonical octets. */
  readonly octets: number;
}

const limitOf = (n: number | undefined): number => (n !== undefined && n > 0 ? n : Number.POSITIVE_INFINITY);

/** True when `quota` sets at least one limit. */
export function hasQuota(quota: Quota | undefined): quota is Quota {
  return limitOf(quota?.maxOctets) !== Number.POSITIVE_INFINITY || limitOf(quota?.maxMessages) !== Number.POSITIVE_INFINITY;
}

/** No room for another message: the message count is at its limit or the octets are. */
export function quotaFull(usage: QuotaUsage, quota: Quota | undefined): boolean {
  return usage.count >= limitOf(quota?.maxMessages) || usage.octets >= limitOf(quota?.maxOctets);
}

export function overQuota(what: string): StoreError {
  return new StoreError('over-quota', `mailbox quota exceeded: ${what}`, { temporary: false });
}

/**
 * The canonical octets one more message may have, given the usage; Infinity when there is no
 * octet limit. Throws `over-quota` when one more message would pass the message limit.
 */
export function quotaRoom(usage: QuotaUsage, quota: Quota | undefined): number {
  const maxMessages = limitOf(quota?.maxMessages);
  if (usage.count + 1 > maxMessages) throw overQuota(`${usage.count} of ${maxMessages} messages`);
  return limitOf(quota?.maxOctets) - usage.octets;
}

/** Throws `over-quota` when a message of `size` canonical octets does not fit. */
export function checkQuota(usage: QuotaUsage, size: number, quota: Quota | undefined): void {
  const room = quotaRoom(usage, quota);
  if (size > room) throw overQuota(`${usage.octets} + ${size} octets over ${limitOf(quota?.maxOctets)}`);
}

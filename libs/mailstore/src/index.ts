export type { MessageMeta, MailboxRef, ReadOptions, Maildrop, DeliveryResult, DeliverOptions, MailStore } from './types.js';
export { StoreError, type StoreErrorCode } from './errors.js';

export type { MessageMeta, MailboxRef, ReadOptions, Maildrop, StoredReader, DeliveryResult, DeliverOptions, Quota, MailStore } from './types.js';
export { StoreError, type StoreErrorCode } from './errors.js';
export {
  CanonicalEncoder,
  CanonicalCounter,
  LfEncoder,
  TopLimiter,
  MESSAGE_CHUNK_SIZE,
  canonicalSize,
  toCanonical,
  toStoredLf,
  limitToTop,
  messageStream,
  type MessageStreamOptions,
} from './streams.js';
export { timeOrderedId, naturalCompare } from './ids.js';
export { LeasedDrop, consumeSource, guardSource, lockLost, tooLarge } from './internal.js';
export { hasQuota, quotaFull, type QuotaUsage } from './quota.js';
export { MemoryStore, MemoryMaildrop } from './memory.js';
export {
  MaildirStore,
  MaildirMaildrop,
  maildirPathFromTemplate,
  maildirUid,
  parseMaildirName,
  withSizeHints,
  sanitizeMaildirHostname,
  type MaildirStoreOptions,
  type MaildirName,
} from './maildir.js';
export { openMessageFile, type ReadMode } from './file-reader.js';

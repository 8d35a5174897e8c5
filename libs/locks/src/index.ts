export type { Lease, LockManager } from './types.js';
export { MemoryLockManager } from './memory.js';

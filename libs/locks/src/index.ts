export type { Lease, LockManager } from './types.js';
export { MemoryLockManager } from './memory.js';
export { IpcLockManager, LockTable, serveLocks, type IpcPeer } from './ipc.js';

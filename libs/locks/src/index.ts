export type { Lease, LockManager } from './types.js';
export { MemoryLockManager } from './memory.js';
export { IpcLockManager, LockTable, serveLocks, type IpcPeer } from './ipc.js';
export { LoginHistory, MemoryLoginDelayGate, type LoginDelayGate } from './login-delay.js';

export type { Lease, LockManager } from './types.js';
export { MemoryLockManager } from './memory.js';
export { IpcLockManager, LockTable, serveLocks, type IpcPeer } from './ipc.js';
export { LoginHistory, MemoryLoginDelayGate, type LoginDelayGate } from './login-delay.js';
export {
  DEFAULT_THROTTLE_LIMITS,
  MemoryLoginThrottle,
  ThrottleTable,
  accountKey,
  addressKey,
  countsAddress,
  throttleVerdict,
  validateThrottleLimits,
  type LoginAttempt,
  type LoginThrottle,
  type ThrottleLimits,
  type ThrottleReason,
  type ThrottleTableOptions,
  type ThrottleVerdict,
} from './throttle.js';
export { RedisLoginThrottle, type RedisLoginThrottleOptions } from './redis-throttle.js';

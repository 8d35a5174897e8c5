import { MemoryLockManager } from '@postern/locks';
import { MemoryStore } from '../src/index.js';
import { storeConformance } from '../src/conformance.js';

storeConformance('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    locks: new MemoryLockManager(),
    cleanup: async () => {},
    reopen: async () => store.restarted(),
  };
});

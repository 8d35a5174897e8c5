import { after, before } from 'node:test';
import { storeConformance } from '@postern/mailstore/conformance';
import { makeRig, standaloneRedis, startBackends, stopBackends, type Backends } from './support.js';

let backends: Backends | undefined;
before(async () => {
  backends = await startBackends();
});
after(() => stopBackends(backends));

storeConformance('S3MailStore (versitygw, standalone Redis)', async () => {
  const b = backends!;
  const rig = makeRig(b.s3Server, standaloneRedis(b.redisServer));
  const others: Array<{ close(): Promise<void> }> = [];
  return {
    store: rig.store,
    locks: rig.locks,
    cleanup: async () => {
      for (const o of others) await o.close();
      await rig.close();
    },
    reopen: async () => {
      const other = rig.another();
      others.push(other);
      return other.store;
    },
  };
});

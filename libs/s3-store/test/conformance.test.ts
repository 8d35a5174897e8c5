import { after, before } from 'node:test';
import { storeConformance } from '@postern/mailstore/conformance';
import { conformanceFixture, makeRig, standaloneRedis, startBackends, stopBackends, type Backends } from './support.js';

let backends: Backends | undefined;
before(async () => {
  backends = await startBackends();
});
after(() => stopBackends(backends));

storeConformance('S3MailStore (versitygw, standalone Redis)', async () => conformanceFixture(makeRig(backends!.s3Server, standaloneRedis(backends!.redisServer))));

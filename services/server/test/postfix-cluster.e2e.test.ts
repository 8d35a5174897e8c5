// A real MTA in front of the cluster: a private Postfix relays the test domain over LMTP to a
// delivery worker on the S3 store; a gateway serves the message. What Postfix delivered must
// come back from RETR byte for byte (Postfix's Received: header plus what swaks submitted).
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRedis, startS3, type RedisServer, type S3Server } from '@postern/testkit';
import { clusterFixture, type ClusterFixture, type ClusterProcess } from './support/cluster.js';
import { Pop3Client } from './support/pop3-client.js';
import { startPostfix, swaks, writeForSwaks, type Postfix } from './support/postfix.js';

describe('Postfix relaying to a cluster delivery worker (S3 store)', () => {
  let redis: RedisServer;
  let s3: S3Server;
  let fx: ClusterFixture;
  let worker: ClusterProcess;
  let gateway: ClusterProcess;
  let postfix: Postfix;

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    fx = await clusterFixture({ alice: 'alice-pw' }, { ...s3.env, REDIS_URL: redis.url });
    [worker, gateway] = await Promise.all([fx.start('delivery'), fx.start('gateway')]);
    postfix = await startPostfix({ domains: ['example.org'], lmtpPort: worker.lmtpPort });
  });
  after(async () => {
    await postfix?.stop();
    await fx?.stop();
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  it('a message submitted to Postfix is retrieved from the gateway byte-exact', async () => {
    const body = [
      'From: Sender <sender@remote.test>',
      'To: <alice@example.org>',
      'Subject: through Postfix to S3',
      'Message-ID: <cluster-1@remote.test>',
      '',
      '.a line that starts with a dot',
      '.',
      `${'0123456789'.repeat(99)}`,
      'caf\xe9 8-bit',
      '',
    ].join('\r\n');
    const submitted = Buffer.from(body, 'latin1');
    const dir = join(fx.dir, 'submitted');
    await mkdir(dir, { recursive: true });
    const file = await writeForSwaks(join(dir, 'm1.eml'), submitted);
    const r = await swaks(['--server', `127.0.0.1:${postfix.smtpPort}`, '--to', 'alice@example.org', '--data', `@${file}`]);
    assert.equal(r.code, 0, r.output);
    const queueId = /<- {2}250 2\.0\.0 Ok: queued as (\w+)/.exec(r.output)?.[1];
    assert.ok(queueId, r.output);
    const sent = await postfix.waitForLog(new RegExp(`${queueId}: to=<alice@example\\.org>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${worker.lmtpPort}, .*status=(\\w+) \\((.*)\\)$`), 30_000);
    assert.equal(sent[1], 'sent', sent[2]);

    const client = await Pop3Client.connect(gateway.pop3Port);
    await client.login('alice', 'alice-pw');
    const list = await client.listing('LIST');
    assert.equal(list.length, 1);
    const retr = await client.multi('RETR 1');
    assert.match(retr.status, /^\+OK/);
    assert.equal(Number(list[0]?.split(' ')[1]), retr.body.length, 'LIST size is the exact RETR octet count');
    const added = retr.body.subarray(0, retr.body.length - submitted.length).toString('latin1');
    assert.match(added, new RegExp(`^Received: from client\\.test .*\r\n\tby mta\\.test \\(Postfix\\) with E?SMTP id ${queueId}`));
    assert.ok(retr.body.subarray(added.length).equals(submitted), 'the submitted message follows, byte for byte');
    assert.match(await client.quit(), /^\+OK/);
  });
});

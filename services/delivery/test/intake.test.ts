// The intake over real sockets into a real Maildir, with accounts from a real passwd-file:
// quotas at RCPT and at DATA, SMTP's one recipient per transaction, the bound on deliveries in
// flight, and the replies for store faults (a wrapper injects ENOSPC and other failures).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PasswdFileBackend } from '@postern/accounts';
import { MaildirStore, StoreError, maildirPathFromTemplate, type DeliverOptions, type MailboxRef, type MailStore } from '@postern/mailstore';
import { Metrics, createLogger } from '@postern/telemetry';
import { effectiveQuota, startIntake, type Intake, type IntakeSettings } from '../src/index.js';
import { Dialog, dataOf, messageOf } from './support/dialog.js';

const PASSWD = [
  'alice:{PLAIN}a',
  'bob:{PLAIN}b::::::userdb_quota_rule=*:messages=1',
  'carol:{PLAIN}c::::::userdb_quota_rule=*:bytes=300',
  'dave:{PLAIN}d::::::userdb_quota_rule=*:messages=0',
  'erin:{PLAIN}e',
  'frank:{PLAIN}f',
];

/** Delivers through the Maildir, except for the users given a fault: their deliveries read the message, then fail. */
class FaultyStore implements MailStore {
  readonly kind = 'faulty';
  readonly faults = new Map<string, () => Error>();
  constructor(readonly inner: MailStore) {}
  open: MailStore['open'] = (...args) => this.inner.open(...args);
  stat = (mailbox: MailboxRef) => this.inner.stat(mailbox);
  async deliver(mailbox: MailboxRef, source: Readable, options?: DeliverOptions) {
    const fault = this.faults.get(mailbox.username);
    if (!fault) return this.inner.deliver(mailbox, source, options);
    for await (const chunk of source) void chunk;
    throw fault();
  }
}

interface Harness {
  readonly intake: Intake;
  readonly dir: string;
  readonly store: FaultyStore;
  readonly metrics: Metrics;
  files(user: string): Promise<string[]>;
  stop(): Promise<void>;
}

async function start(overrides: Partial<IntakeSettings> = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'postern-intake-'));
  const passwd = join(dir, 'passwd');
  await writeFile(passwd, PASSWD.join('\n') + '\n', { mode: 0o600 });
  const accounts = await PasswdFileBackend.open({ path: passwd, watch: false });
  const maildir = (user: string): string => join(dir, 'mail', user, 'Maildir');
  const store = new FaultyStore(new MaildirStore({ pathFor: (m) => maildirPathFromTemplate(join(dir, 'mail', '%u', 'Maildir'), m.username) }));
  const metrics = new Metrics({ processMetrics: false });
  const logger = createLogger({ service: 'intake-test', level: 'warn', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const settings: IntakeSettings = {
    lmtp: { host: '127.0.0.1', port: 0 },
    smtp: { host: '127.0.0.1', port: 0 },
    maxMessageSize: 10_000,
    hostname: 'intake.test',
    spoolDir: join(dir, 'spool'),
    maxConnections: 20,
    concurrency: 4,
    slotWaitMs: 30_000,
    quota: {},
    smtpDomains: [],
    tls: null,
    ...overrides,
  };
  const intake = await startIntake({ settings, accounts, store, logger, metrics });
  return {
    intake,
    dir,
    store,
    metrics,
    files: async (user) => (await readdir(join(maildir(user), 'new')).catch(() => [])).sort(),
    async stop() {
      await intake.close();
      await accounts.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function deliveryCount(metrics: Metrics, protocol: string, result: string): Promise<number> {
  const metric = await metrics.deliveries.get();
  return metric.values.find((v) => v.labels.protocol === protocol && v.labels.result === result)?.value ?? 0;
}

/** Sends DATA and the message; the replies after it (one per recipient for LMTP). */
async function data(dialog: Dialog, message: Buffer, replies: number): Promise<{ code: number; text: string }[]> {
  const go = await dialog.send('DATA');
  assert.equal(go.code, 354);
  dialog.write(dataOf(message));
  const out = [];
  for (let i = 0; i < replies; i++) out.push(await dialog.reply());
  return out.map((r) => ({ code: r.code, text: r.text }));
}

/** Polls an in-process condition until it holds, with a deadline. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('intake: quotas', () => {
  let h: Harness;
  before(async () => {
    h = await start({ quota: { maxMessages: 2 } });
  });
  after(() => h?.stop());

  it('an account limit overrides the default limit by limit; 0 in the account lifts it', () => {
    assert.deepEqual(effectiveQuota({ maxMessages: 2, maxOctets: 500 }, { maxMessages: 1 }), { maxMessages: 1, maxOctets: 500 });
    assert.deepEqual(effectiveQuota({ maxMessages: 2 }, { maxMessages: 0 }), { maxMessages: 0, maxOctets: 0 });
    assert.deepEqual(effectiveQuota({}, undefined), { maxMessages: 0, maxOctets: 0 });
  });

  it('LMTP: a full mailbox is refused at RCPT (552 5.2.2); one the message would overfill at DATA, for that recipient only', async () => {
    const { dialog } = await Dialog.open(h.intake.lmtp!.port, 'LHLO');
    const first = messageOf(200, 'first');
    assert.deepEqual((await dialog.envelope('s@remote.test', ['bob@example.org', 'carol@example.org'])).map((r) => r.code), [250, 250]);
    assert.deepEqual((await data(dialog, first, 2)).map((r) => r.code), [250, 250]);
    // bob holds his one message: full at RCPT. carol has 100 of 300 octets left: accepted at RCPT,
    // refused at DATA for a 200-octet message. erin (default limit 2 messages) gets it.
    const rcpt = await dialog.envelope('s@remote.test', ['bob@example.org', 'carol@example.org', 'erin@example.org']);
    assert.deepEqual(
      rcpt.map((r) => [r.code, r.text.slice(0, 5)]),
      [
        [552, '5.2.2'],
        [250, '2.1.5'],
        [250, '2.1.5'],
      ],
    );
    const replies = await data(dialog, messageOf(200, 'second'), 2);
    assert.deepEqual(replies[0], { code: 552, text: '5.2.2 Mailbox full' });
    assert.equal(replies[1]!.code, 250);
    assert.equal((await h.files('bob')).length, 1);
    assert.equal((await h.files('carol')).length, 1);
    assert.equal((await h.files('erin')).length, 1);
    // carol's one message is the first one, byte for byte.
    const carol = await h.files('carol');
    assert.deepEqual(await readFile(join(h.dir, 'mail', 'carol', 'Maildir', 'new', carol[0]!)), first);
    await dialog.close();
    assert.equal(await deliveryCount(h.metrics, 'lmtp', 'over_quota'), 2);
  });

  it('the default limit applies to accounts without their own; an account limit of 0 lifts it', async () => {
    const { dialog } = await Dialog.open(h.intake.lmtp!.port, 'LHLO');
    for (let i = 0; i < 3; i++) {
      assert.deepEqual((await dialog.envelope('s@remote.test', ['dave@example.org'])).map((r) => r.code), [250]);
      assert.equal((await data(dialog, messageOf(100, `dave ${i}`), 1))[0]!.code, 250);
    }
    assert.deepEqual((await dialog.envelope('s@remote.test', ['frank@example.org'])).map((r) => r.code), [250]);
    assert.equal((await data(dialog, messageOf(100, 'frank 1'), 1))[0]!.code, 250);
    assert.deepEqual((await dialog.envelope('s@remote.test', ['frank@example.org'])).map((r) => r.code), [250]);
    assert.equal((await data(dialog, messageOf(100, 'frank 2'), 1))[0]!.code, 250);
    const full = await dialog.envelope('s@remote.test', ['frank@example.org']);
    assert.equal(full[0]!.code, 552);
    await dialog.close();
    assert.equal((await h.files('dave')).length, 3);
    assert.equal((await h.files('frank')).length, 2);
  });

  it('SMTP: a full mailbox is refused at RCPT with 552 5.2.2', async () => {
    const { dialog } = await Dialog.open(h.intake.smtp!.port, 'EHLO');
    const [bob] = await dialog.envelope('s@remote.test', ['bob@example.org']);
    assert.deepEqual([bob!.code, bob!.text], [552, '5.2.2 Mailbox full']);
    await dialog.close();
  });
});

describe('intake: SMTP transactions', () => {
  let h: Harness;
  before(async () => {
    h = await start({ smtpDomains: ['example.org'] });
  });
  after(() => h?.stop());

  it('takes one recipient per transaction: the second gets 452 4.5.3 and the rest go in the next one', async () => {
    const { dialog, hello } = await Dialog.open(h.intake.smtp!.port, 'EHLO');
    assert.ok(hello.lines.some((l) => l === '250-SIZE 10000' || l === '250 SIZE 10000'), hello.lines.join(' | '));
    assert.ok(!hello.lines.some((l) => /DSN|AUTH|STARTTLS/.test(l)), hello.lines.join(' | '));
    const rcpt = await dialog.envelope('s@remote.test', ['alice@example.org', 'erin@example.org']);
    assert.deepEqual(rcpt.map((r) => [r.code, r.text.slice(0, 5)]), [
      [250, '2.1.5'],
      [452, '4.5.3'],
    ]);
    const message = messageOf(300, 'smtp one');
    const [reply] = await data(dialog, message, 1);
    assert.equal(reply!.code, 250);
    assert.match(reply!.text, /^2\.\d\.\d Ok: delivered to alice as \S+/);
    assert.deepEqual((await dialog.envelope('s@remote.test', ['erin@example.org'])).map((r) => r.code), [250]);
    assert.equal((await data(dialog, message, 1))[0]!.code, 250);
    await dialog.close();
    assert.equal((await h.files('alice')).length, 1);
    assert.equal((await h.files('erin')).length, 1);
  });

  it('accepts only its own domains (550 5.7.1 for others) and known users (550 5.1.1)', async () => {
    const { dialog } = await Dialog.open(h.intake.smtp!.port, 'EHLO');
    const rcpt = await dialog.envelope('s@remote.test', ['alice@elsewhere.test', 'nobody@example.org', 'alice@sub.example.org']);
    assert.deepEqual(
      rcpt.map((r) => r.text),
      ['5.7.1 <alice@elsewhere.test>: Relay access denied', '5.1.1 <nobody@example.org>: User unknown', '5.7.1 <alice@sub.example.org>: Relay access denied'],
    );
    assert.deepEqual(rcpt.map((r) => r.code), [550, 550, 550]);
    assert.equal((await dialog.send('DATA')).code, 503);
    await dialog.close();
  });

  it('refuses a declared SIZE over the limit at MAIL (552 5.3.4) and an oversized message after DATA', async () => {
    const { dialog } = await Dialog.open(h.intake.smtp!.port, 'EHLO');
    const mail = await dialog.send('MAIL FROM:<s@remote.test> SIZE=10001');
    assert.equal(mail.code, 552);
    assert.match(mail.text, /^5\.3\.4 /);
    assert.deepEqual((await dialog.envelope('s@remote.test', ['erin@example.org'])).map((r) => r.code), [250]);
    const [reply] = await data(dialog, messageOf(10_500, 'too big'), 1);
    assert.equal(reply!.code, 552);
    assert.match(reply!.text, /^5\.3\.4 /);
    await dialog.close();
    assert.equal((await h.files('erin')).length, 1, 'only the message from the previous test');
  });
});

describe('intake: store faults', () => {
  let h: Harness;
  before(async () => {
    h = await start();
  });
  after(() => h?.stop());

  it('a full disk answers 452 4.3.1 and any other store failure 451 4.3.0, for that recipient alone', async () => {
    const enospc = (): Error =>
      new StoreError('backend', 'delivery to the Maildir failed', {
        cause: Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 }),
      });
    h.store.faults.set('alice', enospc);
    h.store.faults.set('bob', () => new StoreError('backend', 'S3 PUT timed out'));
    const { dialog } = await Dialog.open(h.intake.lmtp!.port, 'LHLO');
    await dialog.envelope('s@remote.test', ['alice@example.org', 'erin@example.org', 'bob@example.org']);
    const replies = await data(dialog, messageOf(500, 'faults'), 3);
    assert.deepEqual(
      replies.map((r) => [r.code, r.text.slice(0, 5)]),
      [
        [452, '4.3.1'],
        [250, '2.6.0'],
        [451, '4.3.0'],
      ],
    );
    await dialog.close();
    const smtp = (await Dialog.open(h.intake.smtp!.port, 'EHLO')).dialog;
    await smtp.envelope('s@remote.test', ['alice@example.org']);
    assert.deepEqual(await data(smtp, messageOf(500, 'faults'), 1), [{ code: 452, text: '4.3.1 Insufficient system storage, try again later' }]);
    await smtp.close();
    assert.deepEqual(await h.files('alice'), []);
    assert.deepEqual(await h.files('bob'), []);
    assert.equal((await h.files('erin')).length, 1);
    assert.equal(await deliveryCount(h.metrics, 'lmtp', 'no_space'), 1);
    assert.equal(await deliveryCount(h.metrics, 'smtp', 'no_space'), 1);
  });
});

describe('intake: deliveries in flight', () => {
  /** Starts a DATA whose message is not finished: it holds a delivery slot until `finish`. */
  async function holdSlot(h: Harness, user: string): Promise<{ finish: () => Promise<number> }> {
    const { dialog } = await Dialog.open(h.intake.lmtp!.port, 'LHLO');
    await dialog.envelope('s@remote.test', [`${user}@example.org`]);
    assert.equal((await dialog.send('DATA')).code, 354);
    const message = messageOf(4000, 'slow');
    dialog.write(message.subarray(0, 2000));
    await until('the slow delivery holds a slot', () => h.intake.load.inFlight === 1);
    return {
      finish: async () => {
        dialog.write(dataOf(message).subarray(2000));
        const r = await dialog.reply();
        await dialog.close();
        return r.code;
      },
    };
  }

  it('beyond DELIVERY_CONCURRENCY a DATA waits unread, and is delivered when a slot frees', async () => {
    const h = await start({ concurrency: 1, slotWaitMs: 30_000 });
    try {
      const slow = await holdSlot(h, 'alice');
      const { dialog } = await Dialog.open(h.intake.smtp!.port, 'EHLO');
      await dialog.envelope('s@remote.test', ['erin@example.org']);
      const order: string[] = [];
      const waiting = data(dialog, messageOf(300, 'waits'), 1).then((r) => (order.push('waiting'), r));
      await until('the second delivery waits for a slot', () => h.intake.load.waiting === 1);
      assert.equal(order.length, 0, 'no reply while waiting for a slot');
      assert.equal(await slow.finish().then((code) => (order.push('slow'), code)), 250);
      assert.equal((await waiting)[0]!.code, 250);
      assert.deepEqual(order, ['slow', 'waiting']);
      await dialog.close();
      assert.equal((await h.files('alice')).length, 1);
      assert.equal((await h.files('erin')).length, 1);
      assert.deepEqual(h.intake.load, { inFlight: 0, waiting: 0 });
    } finally {
      await h.stop();
    }
  });

  it('with DELIVERY_SLOT_WAIT_MS 0, a DATA beyond the limit gets 451 4.3.2 and nothing is stored', async () => {
    const h = await start({ concurrency: 1, slotWaitMs: 0 });
    try {
      const slow = await holdSlot(h, 'alice');
      const lmtp = (await Dialog.open(h.intake.lmtp!.port, 'LHLO')).dialog;
      await lmtp.envelope('s@remote.test', ['erin@example.org', 'bob@example.org']);
      assert.deepEqual(await data(lmtp, messageOf(300, 'busy'), 2), [
        { code: 451, text: '4.3.2 Too many deliveries in progress, try again later' },
        { code: 451, text: '4.3.2 Too many deliveries in progress, try again later' },
      ]);
      await lmtp.close();
      const smtp = (await Dialog.open(h.intake.smtp!.port, 'EHLO')).dialog;
      await smtp.envelope('s@remote.test', ['erin@example.org']);
      assert.equal((await data(smtp, messageOf(300, 'busy'), 1))[0]!.code, 451);
      await smtp.close();
      assert.equal(await slow.finish(), 250);
      assert.deepEqual(await h.files('erin'), []);
      assert.deepEqual(await h.files('bob'), []);
      assert.equal((await h.files('alice')).length, 1);
      assert.equal(await deliveryCount(h.metrics, 'lmtp', 'busy'), 2);
    } finally {
      await h.stop();
    }
  });
});

// A real MTA in front of the intake: a private Postfix instance relays the test domain to our
// LMTP listener; mail is submitted to Postfix with swaks. Then the SMTP listener, straight from
// swaks. What is asserted is what Postfix reports (its log) and what lands in the Maildirs.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadServerConfig } from '../src/index.js';
import { startPostfix, swaks, writeForSwaks, type Postfix, type Swaks } from './support/postfix.js';
import { startTestServer, type TestServer } from './support/server.js';

const MAX = 20_000;
const PASSWD = [
  'alice:{PLAIN}alice-pw',
  'bob:{PLAIN}bob-pw::::::userdb_quota_rule=*:messages=1',
  'carol:{PLAIN}carol-pw::::::userdb_quota_rule=*:storage=1k',
  'dave:{PLAIN}dave-pw',
  'erin:{PLAIN}erin-pw',
  'frank:{PLAIN}frank-pw',
];

let serial = 0;

/** A message with the headers Postfix would otherwise add, 8-bit text, dot lines and a long line; CRLF. */
function message(to: string, note: string): Buffer {
  const id = `${process.pid}.${++serial}`;
  const head = [
    'Date: Fri, 27 Nov 2026 05:00:00 +0000',
    'From: Sender <sender@remote.test>',
    `To: <${to}>`,
    `Message-ID: <e2e-${id}@remote.test>`,
    `Subject: ${note}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=ISO-8859-1',
    'Content-Transfer-Encoding: 8bit',
  ];
  const body = ['First line.', '.a line that starts with a dot', '..two dots', '.', '', `${'0123456789'.repeat(90)}`, 'Last line.'];
  const text = Buffer.from(`${head.join('\r\n')}\r\n\r\n${body.join('\r\n')}\r\n`, 'latin1');
  return Buffer.concat([text.subarray(0, text.length - 2), Buffer.from([0x20, 0xe9, 0xfc, 0xdf, 0x0d, 0x0a])]);
}

/** A message of at least `size` octets. */
function sized(to: string, note: string, size: number): Buffer {
  const base = message(to, note);
  const fill = Math.max(0, size - base.length);
  const lines = `${'y'.repeat(78)}\r\n`.repeat(Math.ceil(fill / 80));
  return Buffer.concat([base, Buffer.from(lines, 'latin1')]);
}

describe('Postfix relaying to the LMTP intake', () => {
  let srv: TestServer;
  let postfix: Postfix;
  let dir: string;

  before(async () => {
    srv = await startTestServer({
      passwdLines: PASSWD,
      env: { MAX_MESSAGE_SIZE: String(MAX), SMTP_LISTEN: '127.0.0.1:0', SMTP_DOMAINS: 'smtp.example.org' },
    });
    // example.org goes to the LMTP listener; smtp.example.org to the SMTP listener.
    postfix = await startPostfix({
      domains: ['example.org'],
      lmtpPort: srv.lmtpPort,
      smtpDomains: ['smtp.example.org'],
      smtpRelayPort: srv.server.intake?.smtp?.port ?? 0,
    });
    dir = join(srv.dataDir, 'submitted');
    await mkdir(dir);
  });
  after(async () => {
    await postfix?.stop();
    await srv?.stop();
  });

  /** Submits `bytes` to Postfix for `to`; the queue id Postfix gave it. */
  async function submit(to: readonly string[], bytes: Buffer): Promise<string> {
    const file = await writeForSwaks(join(dir, `m${++serial}.eml`), bytes);
    const r = await swaks(['--server', `127.0.0.1:${postfix.smtpPort}`, '--to', to.join(','), '--data', `@${file}`]);
    assert.equal(r.code, 0, r.output);
    const queued = /<- {2}250 2\.0\.0 Ok: queued as (\w+)/.exec(r.output);
    assert.ok(queued, r.output);
    return queued[1] as string;
  }

  /**
   * Postfix's word on one recipient: status (sent, bounced, deferred) and the reason it logged;
   * the `nth` such line (1-based) when a recipient is tried more than once.
   */
  async function outcome(queueId: string, rcpt: string, status = '\\w+', nth = 1): Promise<{ status: string; reason: string }> {
    const smtp = rcpt.endsWith('@smtp.example.org');
    const port = smtp ? srv.server.intake?.smtp?.port : srv.lmtpPort;
    const line = new RegExp(
      `postfix/${smtp ? 'smtp' : 'lmtp'}\\[\\d+\\]: ${queueId}: to=<${rcpt}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${port}, .*status=(${status}) \\((.*)\\)$`,
    );
    const m = await postfix.waitForLog(line, 20_000, nth);
    return { status: m[1] as string, reason: m[2] as string };
  }

  /** The Maildir file the intake named in its 250 reply. */
  async function stored(user: string, reason: string): Promise<Buffer> {
    const uid = new RegExp(`^250 2\\.6\\.0 Ok: delivered to ${user} as (\\S+)$`).exec(reason)?.[1];
    assert.ok(uid, `Postfix logged: ${reason}`);
    const newDir = join(srv.maildir(user), 'new');
    const name = (await readdir(newDir)).find((n) => n === uid || n.startsWith(`${uid},`));
    assert.ok(name, `no file for ${uid} in ${newDir}`);
    return readFile(join(newDir, name));
  }

  /** The file is Postfix's Received: header (nothing else added) followed by the submitted bytes, exactly. */
  function assertRelayedExactly(file: Buffer, submitted: Buffer, queueId: string): void {
    assert.ok(file.length > submitted.length, 'Postfix adds a Received: header');
    const added = file.subarray(0, file.length - submitted.length).toString('latin1');
    assert.ok(file.subarray(added.length).equals(submitted), 'the submitted message follows, byte for byte');
    assert.match(added, new RegExp(`^Received: from client\\.test \\(localhost \\[127\\.0\\.0\\.1\\]\\)\r\n\tby mta\\.test \\(Postfix\\) with E?SMTP id ${queueId}`));
    const lines = added.split('\r\n');
    assert.equal(lines.pop(), '', 'the added header ends with CRLF');
    assert.ok(lines.slice(1).every((l) => l.startsWith('\t') || l.startsWith(' ')), `one header only:\n${added}`);
  }

  it('delivers the message byte-exact: only the Received: header Postfix adds precedes it', async () => {
    const bytes = message('alice@example.org', 'byte-exact');
    const queueId = await submit(['alice@example.org'], bytes);
    const result = await outcome(queueId, 'alice@example.org');
    assert.equal(result.status, 'sent', result.reason);
    assertRelayedExactly(await stored('alice', result.reason), bytes, queueId);
  });

  it('two recipients in one LMTP transaction each get their own 250 and the same bytes', async () => {
    const bytes = message('alice@example.org', 'two recipients');
    const queueId = await submit(['alice@example.org', 'erin@example.org'], bytes);
    const [a, e] = [await outcome(queueId, 'alice@example.org'), await outcome(queueId, 'erin@example.org')];
    assert.deepEqual([a.status, e.status], ['sent', 'sent']);
    assertRelayedExactly(await stored('alice', a.reason), bytes, queueId);
    assertRelayedExactly(await stored('erin', e.reason), bytes, queueId);
    // One LMTP connection carried both: Postfix logs the same relay attempt (one "delays=" tuple) for each.
    await postfix.waitForLog(new RegExp(`${queueId}: from=<sender@remote\\.test>, size=\\d+, nrcpt=2 `));
  });

  it('an unknown recipient is refused at RCPT by the LMTP reply (550 5.1.1) and Postfix bounces it; the others are delivered', async () => {
    const before = (await readdir(join(srv.maildir('alice'), 'new'))).length;
    const queueId = await submit(['nobody@example.org', 'alice@example.org'], message('nobody@example.org', 'unknown'));
    const nobody = await outcome(queueId, 'nobody@example.org');
    assert.equal(nobody.status, 'bounced');
    assert.equal(nobody.reason, 'host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <nobody@example.org>: User unknown (in reply to RCPT TO command)');
    assert.equal((await outcome(queueId, 'alice@example.org')).status, 'sent');
    assert.equal((await readdir(join(srv.maildir('alice'), 'new'))).length, before + 1);
    await assert.rejects(readdir(srv.maildir('nobody')), { code: 'ENOENT' });
  });

  it('over quota: a full mailbox is bounced at RCPT, a message that would overfill one at end of DATA (552 5.2.2)', async () => {
    const first = await submit(['bob@example.org'], message('bob@example.org', 'quota 1'));
    assert.equal((await outcome(first, 'bob@example.org')).status, 'sent');
    const second = await submit(['bob@example.org'], message('bob@example.org', 'quota 2'));
    assert.deepEqual(await outcome(second, 'bob@example.org'), {
      status: 'bounced',
      reason: 'host 127.0.0.1[127.0.0.1] said: 552 5.2.2 Mailbox full (in reply to RCPT TO command)',
    });
    // carol: 1 KiB of storage; empty at RCPT, so the check that refuses is the store's at DATA.
    const big = await submit(['carol@example.org'], sized('carol@example.org', 'quota big', 2000));
    assert.deepEqual(await outcome(big, 'carol@example.org'), {
      status: 'bounced',
      reason: 'host 127.0.0.1[127.0.0.1] said: 552 5.2.2 Mailbox full (in reply to end of DATA command)',
    });
    assert.equal((await readdir(join(srv.maildir('bob'), 'new'))).length, 1);
    assert.deepEqual(await readdir(join(srv.maildir('carol'), 'new')), []);
  });

  it('a temporary store failure is deferred by Postfix and retried for that recipient alone: no duplicate for the others', async () => {
    // dave's Maildir path runs through a regular file, so every write under it fails (ENOTDIR).
    await mkdir(join(srv.dataDir, 'mail'), { recursive: true });
    await writeFile(join(srv.dataDir, 'mail', 'dave'), 'not a directory\n');
    const erinBefore = (await readdir(join(srv.maildir('erin'), 'new'))).length;
    const bytes = message('dave@example.org', 'deferred');
    const queueId = await submit(['erin@example.org', 'dave@example.org'], bytes);
    assert.equal((await outcome(queueId, 'erin@example.org')).status, 'sent');
    assert.deepEqual(await outcome(queueId, 'dave@example.org', 'deferred'), {
      status: 'deferred',
      reason: 'host 127.0.0.1[127.0.0.1] said: 451 4.3.0 Local error in processing, try again later (in reply to end of DATA command)',
    });
    await rm(join(srv.dataDir, 'mail', 'dave'));
    await postfix.flush();
    const retried = await outcome(queueId, 'dave@example.org', 'sent');
    assertRelayedExactly(await stored('dave', retried.reason), bytes, queueId);
    assert.equal((await readdir(join(srv.maildir('erin'), 'new'))).length, erinBefore + 1, 'erin got it once');
  });
  it('over SMTP, Postfix sends one recipient per transaction and defers the rest (452 4.5.3) to later runs: each gets one copy', async () => {
    const to = ['alice@smtp.example.org', 'erin@smtp.example.org', 'frank@smtp.example.org'];
    const counts = async (): Promise<number[]> => Promise.all(['alice', 'erin', 'frank'].map(async (u) => (await readdir(join(srv.maildir(u), 'new')).catch(() => [])).length));
    const before = await counts();
    const bytes = message('alice@smtp.example.org', 'smtp relay');
    const queueId = await submit(to, bytes);
    const first = await outcome(queueId, to[0]!);
    assert.equal(first.status, 'sent', first.reason);
    assertRelayedExactly(await stored('alice', first.reason), bytes, queueId);
    for (const rcpt of to.slice(1)) {
      assert.deepEqual(await outcome(queueId, rcpt), {
        status: 'deferred',
        reason: 'host 127.0.0.1[127.0.0.1] said: 452 4.5.3 Error: too many recipients (in reply to RCPT TO command)',
      });
    }
    // Each queue run delivers one more.
    await postfix.flush();
    assert.equal((await outcome(queueId, to[1]!, 'sent')).status, 'sent');
    assert.equal((await outcome(queueId, to[2]!, '\\w+', 2)).status, 'deferred');
    await postfix.flush();
    const last = await outcome(queueId, to[2]!, 'sent');
    assertRelayedExactly(await stored('frank', last.reason), bytes, queueId);
    assert.deepEqual(await counts(), before.map((n) => n + 1));
  });
});

describe('SMTP intake, straight from swaks', () => {
  let srv: TestServer;
  let port: number;

  before(async () => {
    srv = await startTestServer({
      passwdLines: PASSWD,
      env: { SMTP_LISTEN: '127.0.0.1:0', SMTP_DOMAINS: 'example.org', MAX_MESSAGE_SIZE: String(MAX) },
    });
    port = srv.server.intake?.smtp?.port ?? 0;
    assert.ok(port > 0, 'SMTP_LISTEN starts the SMTP listener');
  });
  after(() => srv?.stop());

  const send = (to: string, extra: readonly string[] = []): Promise<Swaks> => swaks(['--server', `127.0.0.1:${port}`, '--to', to, ...extra]);
  const count = async (user: string): Promise<number> => (await readdir(join(srv.maildir(user), 'new')).catch(() => [])).length;

  it('advertises SIZE and STARTTLS, no AUTH; refuses other domains (550 5.7.1) and unknown users (550 5.1.1)', async () => {
    const relay = await send('someone@elsewhere.test');
    assert.notEqual(relay.code, 0);
    assert.match(relay.output, new RegExp(`<- {2}250[- ]SIZE ${MAX}\n`));
    assert.match(relay.output, /<- {2}250[- ]STARTTLS\n/);
    assert.doesNotMatch(relay.output, /AUTH/);
    assert.match(relay.output, /<\*\* 550 5\.7\.1 <someone@elsewhere\.test>: Relay access denied/);
    const unknown = await send('nobody@example.org');
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.output, /<\*\* 550 5\.1\.1 <nobody@example\.org>: User unknown/);
    assert.doesNotMatch(unknown.output, / -> DATA/);
  });

  it('refuses a message over SIZE with 552 5.3.4 and stores nothing', async () => {
    const before = await count('erin');
    const file = await writeForSwaks(join(srv.dataDir, 'big.eml'), sized('erin@example.org', 'too big', MAX + 5000));
    const r = await send('erin@example.org', ['--data', `@${file}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /<\*\* 552 5\.3\.4 /);
    assert.equal(await count('erin'), before);
  });

  it('takes one recipient per transaction: the second RCPT gets 452 4.5.3, the first gets the message', async () => {
    const [alice, erin] = [await count('alice'), await count('erin')];
    const r = await send('alice@example.org,erin@example.org');
    assert.match(r.output, / -> RCPT TO:<alice@example\.org>\n<- {2}250 2\.1\.5 /);
    assert.match(r.output, / -> RCPT TO:<erin@example\.org>\n<\*\* 452 4\.5\.3 /);
    assert.match(r.output, /<- {2}250 2\.6\.0 Ok: delivered to alice as /);
    assert.deepEqual([await count('alice'), await count('erin')], [alice + 1, erin]);
  });

  it('STARTTLS with the server certificate, verified by swaks; the message is stored byte-exact', async () => {
    const bytes = message('alice@example.org', 'over TLS');
    const file = await writeForSwaks(join(srv.dataDir, 'tls.eml'), bytes);
    const r = await send('alice@example.org', ['--tls', '--tls-verify', '--tls-ca-path', srv.certFile, '--data', `@${file}`]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /=== TLS started with cipher /);
    const uid = /<~ {2}250 2\.6\.0 Ok: delivered to alice as (\S+)/.exec(r.output)?.[1];
    assert.ok(uid, r.output);
    const name = (await readdir(join(srv.maildir('alice'), 'new'))).find((n) => n.startsWith(`${uid},`));
    assert.ok(name);
    assert.deepEqual(await readFile(join(srv.maildir('alice'), 'new', name)), bytes);
  });
});

describe('intake settings', () => {
  it('QUOTA_MAX_MESSAGES is the default limit; an account with its own rule keeps its own', async () => {
    const srv = await startTestServer({
      passwdLines: [...PASSWD, 'gina:{PLAIN}gina-pw::::::userdb_quota_rule=*:messages=3'],
      env: { SMTP_LISTEN: '127.0.0.1:0', QUOTA_MAX_MESSAGES: '1' },
    });
    try {
      const send = (to: string): Promise<Swaks> => swaks(['--server', `127.0.0.1:${srv.server.intake?.smtp?.port}`, '--to', to]);
      assert.equal((await send('erin@example.org')).code, 0);
      const full = await send('erin@example.org');
      assert.notEqual(full.code, 0);
      assert.match(full.output, /<\*\* 552 5\.2\.2 Mailbox full/);
      for (let i = 0; i < 3; i++) assert.equal((await send('gina@example.org')).code, 0);
      assert.match((await send('gina@example.org')).output, /<\*\* 552 5\.2\.2 /);
    } finally {
      await srv.stop();
    }
  });

  it('refuses bad intake settings naming the key', () => {
    const env = { DATA_DIR: '/nonexistent' };
    assert.throws(() => loadServerConfig({ env: { ...env, DELIVERY_CONCURRENCY: '0' } }), /DELIVERY_CONCURRENCY/);
    assert.throws(() => loadServerConfig({ env: { ...env, QUOTA_MAX_OCTETS: '-1' } }), /QUOTA_MAX_OCTETS/);
    assert.throws(() => loadServerConfig({ env: { ...env, SMTP_LISTEN: 'nowhere' } }), /SMTP_LISTEN/);
    const c = loadServerConfig({ env });
    assert.equal(c.SMTP_LISTEN, null, 'SMTP is off unless set');
    assert.deepEqual([c.QUOTA_MAX_OCTETS, c.QUOTA_MAX_MESSAGES, c.DELIVERY_CONCURRENCY], [0, 0, 32]);
  });
});

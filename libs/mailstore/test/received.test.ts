/** Delivery times in MessageMeta (`received`), which EXPIRE n measures message age by. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { MemoryLockManager } from '@postern/locks';
import { MaildirStore, MemoryStore, type MailboxRef, type MailStore, type MessageMeta } from '../src/index.js';
import { maildirReceived } from '../src/maildir.js';

const ALICE: MailboxRef = { id: 'alice', username: 'alice' };
const MESSAGE = 'Subject: t\r\n\r\nbody\r\n';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'postern-received-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function messages(store: MailStore): Promise<readonly MessageMeta[]> {
  const lease = await new MemoryLockManager().acquire(ALICE.id);
  assert.ok(lease);
  const drop = await store.open(ALICE, lease);
  await drop.close();
  return drop.messages;
}

describe('received', () => {
  test('maildirReceived reads the seconds before the first dot, and nothing else', () => {
    assert.equal(maildirReceived('1700000000.M1P2Q3.host'), 1_700_000_000_000);
    assert.equal(maildirReceived('999.x'), 999_000);
    assert.equal(maildirReceived('abc.1700000000'), undefined);
    assert.equal(maildirReceived('1700000000'), undefined);
    assert.equal(maildirReceived('.1700000000'), undefined);
    assert.equal(maildirReceived('17000000000000000.x'), undefined);
  });

  test('Maildir: the file name gives the delivery time, else the mtime', async () => {
    const root = join(scratch, 'Maildir');
    await mkdir(join(root, 'new'), { recursive: true });
    await mkdir(join(root, 'cur'), { recursive: true });
    const named = 1_600_000_000;
    await writeFile(join(root, 'cur', `${named}.M1P1.host:2,S`), MESSAGE);
    const unnamed = join(root, 'new', 'imported-message');
    await writeFile(unnamed, MESSAGE);
    const mtime = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));
    await utimes(unnamed, mtime, mtime);
    const store = new MaildirStore({ pathFor: () => root, hostname: 'h', fsync: false });
    const delivered = await store.deliver(ALICE, Readable.from([Buffer.from(MESSAGE)]));
    const list = await messages(store);
    const byUid = new Map(list.map((m) => [m.uid, m.received]));
    assert.equal(byUid.get(`${named}.M1P1.host`), named * 1000);
    assert.equal(byUid.get('imported-message'), mtime.getTime());
    const ours = byUid.get(delivered.uid);
    assert.ok(ours !== undefined && Math.abs(ours - Date.now()) < 60_000, `our delivery is recent: ${ours}`);
  });

  test('MemoryStore: the delivery time', async () => {
    const store = new MemoryStore();
    const before = Date.now();
    await store.deliver(ALICE, Readable.from([Buffer.from(MESSAGE)]));
    const [message] = await messages(store);
    assert.ok(message?.received !== undefined && message.received >= before && message.received <= Date.now());
  });
});

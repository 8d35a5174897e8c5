// Maildir quota beyond the shared conformance cases: files other agents add or remove count,
// and the count this process keeps between deliveries follows the directory.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { MaildirStore, StoreError } from '../src/index.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function maildir(): Promise<{ store: MaildirStore; root: string }> {
  const root = await mkdtemp(join(tmpdir(), 'postern-quota-'));
  dirs.push(root);
  return { store: new MaildirStore({ pathFor: () => root, fsync: false }), root };
}

const box = { id: 'q', username: 'q' };
const deliver = (store: MaildirStore, text: string, maxMessages: number) =>
  store.deliver(box, Readable.from([Buffer.from(text, 'latin1')]), { quota: { maxMessages } });
const isOverQuota = (e: unknown): boolean => e instanceof StoreError && e.code === 'over-quota';

/** Moves a directory's mtime a second ahead, as the kernel does for a change in a later tick. */
async function touchLater(path: string): Promise<void> {
  const later = new Date(Date.now() + 1000);
  await utimes(path, later, later);
}

describe('MaildirStore quota and other agents', () => {
  it('counts a message another agent put in new/, and one without size hints by its size on disk', async () => {
    const { store, root } = await maildir();
    await deliver(store, 'Subject: 1\n\nx\n', 3);
    // Postfix-style file: no S=/W= hints.
    await writeFile(join(root, 'new', '1700000000.V801I1M1.mta'), 'Subject: from postfix\n\nbody\n');
    await touchLater(join(root, 'new'));
    await deliver(store, 'Subject: 2\n\nx\n', 3);
    await assert.rejects(deliver(store, 'Subject: 3\n\nx\n', 3), isOverQuota);
    // 17 + 17 canonical octets of ours, 28 on disk for the hintless file: 62 in use, and 'x' is
    // 3 canonical octets, so it fits a limit of 65 and not one of 64.
    const tiny = (maxOctets: number) => store.deliver(box, Readable.from([Buffer.from('x')]), { quota: { maxOctets } });
    await assert.rejects(tiny(64), isOverQuota);
    assert.equal((await tiny(65)).size, 3);
  });

  it('a message another agent removed frees its room for the next delivery', async () => {
    const { store, root } = await maildir();
    await deliver(store, 'Subject: 1\n\nx\n', 2);
    await deliver(store, 'Subject: 2\n\nx\n', 2);
    await assert.rejects(deliver(store, 'Subject: 3\n\nx\n', 2), isOverQuota);
    const [first] = await readdir(join(root, 'new'));
    await unlink(join(root, 'new', first!));
    await touchLater(join(root, 'new'));
    await deliver(store, 'Subject: 3\n\nx\n', 2);
    assert.equal((await readdir(join(root, 'new'))).length, 2);
  });
});

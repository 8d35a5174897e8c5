import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLockManager } from '@postern/locks';
import { MaildirStore, maildirPathFromTemplate } from '../src/index.js';
import { storeConformance } from '../src/conformance.js';

for (const readMode of ['sync', 'async'] as const) {
  storeConformance(`MaildirStore (${readMode} reads)`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postern-maildir-'));
    const options = {
      readMode,
      pathFor: (m: { username: string }) => maildirPathFromTemplate(join(dir, '%d', '%n', 'Maildir'), m.username),
    };
    return {
      store: new MaildirStore(options),
      locks: new MemoryLockManager(),
      cleanup: () => rm(dir, { recursive: true, force: true }),
      reopen: async () => new MaildirStore({ ...options, hostname: 'restarted.example' }),
    };
  });
}

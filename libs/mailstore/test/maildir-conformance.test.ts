import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLockManager } from '@postern/locks';
import { MaildirStore, maildirPathFromTemplate } from '../src/index.js';
import { storeConformance } from '../src/conformance.js';

for (const [readMode, saveCrlf] of [['sync', true], ['async', false]] as const) {
  storeConformance(`MaildirStore (${readMode} reads, ${saveCrlf ? 'CRLF' : 'LF'} on disk)`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postern-maildir-'));
    const options = {
      readMode,
      saveCrlf,
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

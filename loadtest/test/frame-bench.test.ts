import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RETR_FRAME_INPUT } from '@postern/pop3-protocol';
import { frameBench } from '../src/frame-bench.js';
import { generateMail } from '../src/mailgen.js';

const scratch = mkdtempSync(join(os.tmpdir(), 'postern-frame-bench-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('frameBench', () => {
  it('checks both encodings agree on generated mail (including messages over one framer chunk) and reports both rates', () => {
    const root = join(scratch, 'mail');
    generateMail({ root, users: 1, messages: 12, sizes: '1k-4k:2,150k-300k:1', seed: 3 });
    const dir = join(root, 'user1', 'Maildir', 'new');
    const files = readdirSync(dir).map((name) => readFileSync(join(dir, name)));
    assert.ok(files.some((f) => f.length > RETR_FRAME_INPUT), 'some messages span several chunks');
    const r = frameBench(files, 1);
    assert.equal(r.files, 12);
    assert.equal(r.octets, files.reduce((n, f) => n + f.length, 0));
    assert.ok(r.framerMBps > 0 && r.generalMBps > 0);
  });

  it('agrees on edge shapes, including a CRLF and a dot line split at the chunk boundary', () => {
    const big = 'x'.repeat(RETR_FRAME_INPUT - 1);
    const shapes = ['', '.', '\r', '\n.', 'a\r\n..\r\n', `${big}\r\n.`, `${big}\n.\n`, `${big}x\n.`].map((s) => Buffer.from(s, 'latin1'));
    assert.doesNotThrow(() => frameBench(shapes, 1));
  });
});

// EXPIRE (RFC 2449 section 6.7) end to end with Python's poplib and curl: the server removes
// expired messages only in the commit of a QUIT from TRANSACTION (invariant 2). EXPIRE 0: what
// the session retrieved; EXPIRE 1: what was delivered more than a day before the login, judged
// by the `<secs>.` of the Maildir file name.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { uidsOnDisk } from './support/maildir.js';
import { run, runOk } from './support/run.js';
import { startTestServer, type TestServer } from './support/server.js';

const PASSWORD = 'expire-secret-1';

/**
 * poplib, driven by a list of steps: `retr N`, `top N L`, `quit`, or `drop` (close the socket
 * without QUIT). Prints the CAPA EXPIRE value and each reply's first line as JSON.
 */
const POPLIB = `
import json, poplib, sys
port, user, password, *steps = sys.argv[1:]
pop = poplib.POP3('127.0.0.1', int(port), timeout=30)
out = {'expire': pop.capa().get('EXPIRE'), 'replies': []}
pop.user(user)
pop.pass_(password)
for s in steps:
    verb, *args = s.split()
    if verb == 'retr':
        out['replies'].append(pop.retr(int(args[0]))[0].decode())
    elif verb == 'top':
        out['replies'].append(pop.top(int(args[0]), int(args[1]))[0].decode())
    elif verb == 'quit':
        out['replies'].append(pop.quit().decode())
    elif verb == 'drop':
        pop.sock.close()
print(json.dumps(out))
`;

interface PoplibRun {
  expire: string[] | null;
  replies: string[];
}

async function poplib(srv: TestServer, user: string, ...steps: string[]): Promise<PoplibRun> {
  const result = await runOk('python3', ['-c', POPLIB, String(srv.pop3Port), user, PASSWORD, ...steps]);
  return JSON.parse(result.stdout.toString('utf8')) as PoplibRun;
}

const message = (n: number): string => `Subject: message ${n}\r\n\r\nline 1 of ${n}\r\nline 2 of ${n}\r\n`;

/** Writes messages into `cur/` under Maildir names starting with the given delivery times (s). */
async function seed(srv: TestServer, user: string, seconds: readonly number[]): Promise<string[]> {
  const root = srv.maildir(user);
  for (const sub of ['new', 'cur', 'tmp']) await mkdir(join(root, sub), { recursive: true });
  const bases = seconds.map((s, i) => `${s}.M${i}P${process.pid}.seeded`);
  for (let i = 0; i < bases.length; i++) await writeFile(join(root, 'cur', `${bases[i]}:2,`), message(i + 1));
  return bases;
}

describe('EXPIRE 0: messages retrieved in a session are removed at its QUIT', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ users: { zero: PASSWORD, drop: PASSWORD, curl: PASSWORD }, env: { EXPIRE: '0' } });
  });
  after(async () => srv?.stop());

  it('poplib: RETR 1 and a TOP covering message 3 remove them; a partial TOP of message 2 does not', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bases = await seed(srv, 'zero', [now - 30, now - 20, now - 10]);
    const end = srv.waitForLog((r) => r.msg === 'session end' && r.user === 'zero');
    const out = await poplib(srv, 'zero', 'retr 1', 'top 2 1', 'top 3 10', 'quit');
    assert.deepEqual(out.expire, ['0']);
    assert.match(out.replies[3] ?? '', /^\+OK .*\(1 messages left\)/);
    assert.deepEqual(await uidsOnDisk(srv.maildir('zero')), [bases[1]]);
    const record = await end;
    assert.equal(record.result, 'logout');
    assert.equal(record.deleted, 2);
    assert.equal(record.expired, 2);
  });

  it('poplib: a connection dropped after RETR removes nothing', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bases = await seed(srv, 'drop', [now - 20, now - 10]);
    const end = srv.waitForLog((r) => r.msg === 'session end' && r.user === 'drop');
    const out = await poplib(srv, 'drop', 'retr 1', 'retr 2', 'drop');
    assert.equal(out.replies.length, 2);
    const record = await end;
    assert.equal(record.result, 'disconnected');
    assert.equal(record.deleted, 0);
    assert.deepEqual(await uidsOnDisk(srv.maildir('drop')), [...bases].sort());
  });

  it('curl: fetching message 1 (RETR, then QUIT) removes it', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bases = await seed(srv, 'curl', [now - 20, now - 10]);
    const end = srv.waitForLog((r) => r.msg === 'session end' && r.user === 'curl');
    const result = await run('curl', ['-s', '-S', `pop3://127.0.0.1:${srv.pop3Port}/1`, '-u', `curl:${PASSWORD}`]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString('latin1'), message(1));
    assert.equal((await end).expired, 1);
    assert.deepEqual(await uidsOnDisk(srv.maildir('curl')), [bases[1]]);
  });
});

describe('EXPIRE 1: messages delivered more than a day before the login are removed at QUIT', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ users: { aged: PASSWORD }, env: { EXPIRE: '1' } });
  });
  after(async () => srv?.stop());

  it('poplib: a login and QUIT remove the message whose file name says it is 2 days old, and only it', async () => {
    const now = Math.floor(Date.now() / 1000);
    const bases = await seed(srv, 'aged', [now - 2 * 86_400, now - 86_400 + 3_600, now - 60]);
    // First a dropped connection: nothing may go.
    const dropped = srv.waitForLog((r) => r.msg === 'session end' && r.user === 'aged');
    await poplib(srv, 'aged', 'drop');
    assert.equal((await dropped).result, 'disconnected');
    assert.deepEqual(await uidsOnDisk(srv.maildir('aged')), [...bases].sort());
    const end = srv.waitForLog((r) => r.msg === 'session end' && r.user === 'aged');
    const out = await poplib(srv, 'aged', 'quit');
    assert.deepEqual(out.expire, ['1']);
    assert.match(out.replies[0] ?? '', /^\+OK .*\(2 messages left\)/);
    assert.equal((await end).expired, 1);
    assert.deepEqual(await uidsOnDisk(srv.maildir('aged')), [bases[1], bases[2]].sort());
  });
});

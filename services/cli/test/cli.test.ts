// Runs the CLI as a child process, as an operator would, on a temporary passwd-file, then
// checks the result with the server's own PasswdFileBackend.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inlineVerifier, PasswdFileBackend } from '@postern/accounts';
import { cli, MAIN, TSX } from './support/cli.js';

const here = dirname(fileURLToPath(import.meta.url));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'postern-cli-'));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function check(path: string, username: string, password: string): Promise<boolean> {
  const backend = await PasswdFileBackend.open({ path, verifier: inlineVerifier, watch: false, onWarning: () => undefined });
  try {
    return (await backend.verifyPassword({ username, password })).ok;
  } finally {
    await backend.close();
  }
}

describe('postern user', () => {
  it('add: reads the password from the first line of stdin, writes SHA512-CRYPT, mode 0600', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    const r = await cli(['--passwd-file', path, 'user', 'add', 'alice'], { input: 'first line\nsecond line\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /added user alice \(SHA512-CRYPT\)/);
    assert.ok(!r.stdout.includes('first line') && !r.stderr.includes('first line'));
    assert.match(await readFile(path, 'utf8'), /^alice:\{SHA512-CRYPT\}\$6\$[^:\n]+\n$/);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(await check(path, 'alice', 'first line'), true);
    assert.equal(await check(path, 'alice', 'second line'), false);
  });

  it('add --scheme: every scheme verifies with PasswdFileBackend; CRLF input is fine', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    const schemes = ['SHA512-CRYPT', 'SHA256-CRYPT', 'blf-crypt', 'ARGON2ID', 'SSHA512', 'PLAIN'];
    for (const [i, scheme] of schemes.entries()) {
      const r = await cli(['user', 'add', `u${i}`, '--scheme', scheme, '--passwd-file', path], { input: `pä ss:${i}\r\n` });
      assert.equal(r.code, 0, r.stderr);
    }
    const text = await readFile(path, 'utf8');
    assert.match(text, /^u2:\{BLF-CRYPT\}\$2y\$10\$/m);
    assert.match(text, /^u3:\{ARGON2ID\}\$argon2id\$/m);
    assert.match(text, /^u5:\{PLAIN\.B64\}/m);
    for (const i of schemes.keys()) assert.equal(await check(path, `u${i}`, `pä ss:${i}`), true, schemes[i]);
  });

  it('passwd: changes only that password and keeps every other line', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    const before = '# users\nalice:{PLAIN}old:1000:1000::/home/alice::quota=1G\n\nbob:{PLAIN}bobpw\n';
    await writeFile(path, before, { mode: 0o600 });
    const r = await cli(['--passwd-file', path, 'user', 'passwd', 'alice', '--scheme', 'BLF-CRYPT'], { input: 'n3w\n' });
    assert.equal(r.code, 0, r.stderr);
    const after = await readFile(path, 'utf8');
    assert.match(after, /^# users\nalice:\{BLF-CRYPT\}\$2y\$[^:]+:1000:1000::\/home\/alice::quota=1G\n\nbob:\{PLAIN\}bobpw\n$/);
    assert.equal(await check(path, 'alice', 'n3w'), true);
    assert.equal(await check(path, 'alice', 'old'), false);
    assert.equal(await check(path, 'bob', 'bobpw'), true);
  });

  it('del and list', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(path, '# comment\nalice:{PLAIN}a\nbob:{PLAIN}b\ncarol:{PLAIN}c\n', { mode: 0o600 });
    assert.equal((await cli(['--passwd-file', path, 'user', 'del', 'bob'])).code, 0);
    const list = await cli(['--passwd-file', path, 'user', 'list']);
    assert.equal(list.code, 0);
    assert.equal(list.stdout, 'alice\ncarol\n');
    assert.equal(await readFile(path, 'utf8'), '# comment\nalice:{PLAIN}a\ncarol:{PLAIN}c\n');
  });

  it('list on a missing file prints nothing and succeeds', async () => {
    const dir = await tempDir();
    const r = await cli(['--passwd-file', join(dir, 'none'), 'user', 'list']);
    assert.deepEqual([r.code, r.stdout], [0, '']);
  });

  it('finds the file: --passwd-file, else $PASSWD_FILE, else $DATA_DIR/passwd, else ./var/passwd', async () => {
    const dir = await tempDir();
    assert.equal((await cli(['user', 'add', 'a1'], { cwd: dir, input: 'x\n' })).code, 0);
    assert.match(await readFile(join(dir, 'var', 'passwd'), 'utf8'), /^a1:/);
    assert.equal((await cli(['user', 'add', 'a2'], { cwd: dir, input: 'x\n', env: { DATA_DIR: 'data' } })).code, 0);
    assert.match(await readFile(join(dir, 'data', 'passwd'), 'utf8'), /^a2:/);
    assert.equal((await cli(['user', 'add', 'a3'], { cwd: dir, input: 'x\n', env: { DATA_DIR: 'data', PASSWD_FILE: 'env.passwd' } })).code, 0);
    assert.match(await readFile(join(dir, 'env.passwd'), 'utf8'), /^a3:/);
    const r = await cli(['user', 'add', 'a4', '--passwd-file', 'opt.passwd'], { cwd: dir, input: 'x\n', env: { PASSWD_FILE: 'env.passwd' } });
    assert.equal(r.code, 0);
    assert.match(await readFile(join(dir, 'opt.passwd'), 'utf8'), /^a4:/);
  });

  describe('errors', () => {
    it('usage errors exit 2 and write nothing', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      const cases: string[][] = [
        [],
        ['user'],
        ['user', 'add'],
        ['user', 'add', 'alice', 'secret-on-argv'],
        ['user', 'frob', 'x'],
        ['mailbox', 'frob'],
        ['user', 'add', 'alice', '--scheme', 'MD5'],
        ['user', 'del', 'alice', '--scheme', 'PLAIN'],
        ['user', 'list', '--password', 'x'],
        ['user', 'add', 'bad:name'],
      ];
      const results = await Promise.all(cases.map((args) => cli(['--passwd-file', path, ...args], { input: 'pw\n' })));
      results.forEach((r, i) => {
        assert.equal(r.code, 2, `${cases[i]!.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^postern: .*\n(.*\n)*Try 'postern --help'\.\n$/);
      });
      await assert.rejects(stat(path), { code: 'ENOENT' });
    });

    it('failures exit 1 with a clear message', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      await writeFile(path, 'alice:{PLAIN}a\n', { mode: 0o600 });
      const expectations: [string[], string, RegExp][] = [
        [['user', 'add', 'ALICE'], 'x\n', /user ALICE already exists/],
        [['user', 'passwd', 'bob'], 'x\n', /no user bob/],
        [['user', 'del', 'bob'], '', /no user bob/],
        [['user', 'add', 'carol'], '', /no password on standard input/],
        [['user', 'add', 'carol'], '\n', /empty password/],
      ];
      const results = await Promise.all(expectations.map(([args, input]) => cli(['--passwd-file', path, ...args], { input })));
      results.forEach((r, i) => {
        const [args, , message] = expectations[i]!;
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
      });
      assert.equal(await readFile(path, 'utf8'), 'alice:{PLAIN}a\n');
    });
  });

  it('--help lists the commands and exits 0', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    for (const c of ['user add NAME', 'user passwd NAME', 'user del NAME', 'user list', '--passwd-file', '--scheme']) assert.ok(r.stdout.includes(c), c);
    const sub = await cli(['user', 'add', '--help']);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /^Usage: postern user add NAME \[--scheme /);
  });

  it('a running server picks up users the CLI adds (rename-replace seen by the watch)', async () => {
    const dir = await tempDir();
    const path = join(dir, 'passwd');
    await writeFile(path, 'alice:{PLAIN}a\n', { mode: 0o600 });
    const backend = await PasswdFileBackend.open({ path, verifier: inlineVerifier, now: () => 0, onWarning: () => undefined });
    try {
      assert.equal((await cli(['--passwd-file', path, 'user', 'add', 'bob', '--scheme', 'PLAIN'], { input: 'b\n' })).code, 0);
      const deadline = Date.now() + 5000;
      while (!(await backend.verifyPassword({ username: 'bob', password: 'b' })).ok) {
        assert.ok(Date.now() < deadline, 'the backend never saw the new user');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok((await backend.verifyPassword({ username: 'alice', password: 'a' })).ok);
    } finally {
      await backend.close();
    }
  });

  describe('on a terminal', () => {
    // Python's pty module gives the CLI a real terminal; python3 is part of the test machine.
    const PTY_DRIVER = `
import json, os, pty, select, sys, time
args, answers, together = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == '1'
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
out = b''
def read_until(done, timeout=20):
    global out
    end = time.time() + timeout
    while not done() and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                return
            if not chunk:
                return
            out += chunk
if together:
    read_until(lambda: out.count(b'password: ') >= 1)
    os.write(fd, b''.join(a.encode() + b'\\r' for a in answers))
else:
    for i, a in enumerate(answers):
        read_until(lambda: out.count(b'password: ') >= i + 1)
        os.write(fd, a.encode() + b'\\r')
read_until(lambda: False)
_, status = os.waitpid(pid, 0)
sys.stdout.write(json.dumps({'code': os.waitstatus_to_exitcode(status), 'out': out.decode('utf-8', 'replace')}))
`;

    async function onTty(args: string[], answers: string[], together = false): Promise<{ code: number; out: string }> {
      const argv = [process.execPath, '--conditions=development', '--import', TSX, MAIN, ...args];
      return new Promise((resolve, reject) => {
        const child = spawn('python3', ['-c', PTY_DRIVER, JSON.stringify(argv), JSON.stringify(answers), together ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
        let stdout = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.on('error', (e) => reject(new Error(`python3 is needed to drive a terminal: ${e.message}`)));
        child.on('close', () => {
          try {
            resolve(JSON.parse(stdout) as { code: number; out: string });
          } catch {
            reject(new Error(`pty driver failed: ${stdout}`));
          }
        });
      });
    }

    it('prompts twice without echo', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      const r = await onTty(['--passwd-file', path, 'user', 'add', 'alice'], ['tty-s3cret', 'tty-s3cret']);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /New password: /);
      assert.match(r.out, /Retype new password: /);
      assert.ok(!r.out.includes('tty-s3cret'), `password echoed: ${r.out}`);
      assert.equal(await check(path, 'alice', 'tty-s3cret'), true);
    });

    it('keeps keystrokes typed ahead for the second prompt, still without echo', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      const r = await onTty(['--passwd-file', path, 'user', 'add', 'alice'], ['fast-typist', 'fast-typist'], true);
      assert.equal(r.code, 0, r.out);
      assert.ok(!r.out.includes('fast-typist'), `password echoed: ${r.out}`);
      assert.equal(await check(path, 'alice', 'fast-typist'), true);
    });

    it('refuses when the two entries differ', async () => {
      const dir = await tempDir();
      const path = join(dir, 'passwd');
      const r = await onTty(['--passwd-file', path, 'user', 'add', 'alice'], ['one', 'two']);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /passwords do not match/);
      await assert.rejects(stat(path), { code: 'ENOENT' });
    });
  });
});

describe('packaging', () => {
  it('declares the postern binary at dist/main.js, built from a main.ts with a shebang', async () => {
    const pkg = JSON.parse(await readFile(join(here, '..', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.deepEqual(pkg.bin, { postern: 'dist/main.js' });
    assert.ok((await readFile(MAIN, 'utf8')).startsWith('#!/usr/bin/env node\n'));
  });
});

describe('postern mailbox list', () => {
  it('prints each user with the message count and CRLF octets of their Maildir', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'passwd'), 'alice:{PLAIN}a\nbob:{PLAIN}b\n');
    const { mkdir } = await import('node:fs/promises');
    const newDir = join(dir, 'mail', 'alice', 'Maildir', 'new');
    await mkdir(newDir, { recursive: true });
    // Two LF files as an MTA writes them: 3 lines (+3 CRs) and 1 line (+1 CR).
    await writeFile(join(newDir, '1700000000.M1P1Q1.host'), 'A: b\n\nbody\n');
    await writeFile(join(newDir, '1700000001.M1P1Q1.host'), 'x\n');
    const r = await cli(['mailbox', 'list'], { env: { DATA_DIR: dir } });
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows, [
      ['USER', 'MESSAGES', 'OCTETS'],
      ['alice', '2', String(11 + 3 + 2 + 1)],
      ['bob', '0', '0'],
    ]);
  });
});

// Real POP3 clients against the single node: Python poplib, curl, fetchmail, mpop and getmail,
// over plain POP3, implicit TLS (the 995-style port) and STLS. The corpus is delivered over LMTP
// as exact CRLF bytes and must come back byte for byte: exactly from poplib and curl, and with
// LF line ends from the clients that write local files (fetchmail's Received header aside).
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { listMaildir, uidsOnDisk } from './support/maildir.js';
import { corpus, deliverAll, stripAddedHeaders, testIdOf, toLf, type TestMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { requireProgram, runOk, type RunOptions, type RunResult } from './support/run.js';
import { assertNoSecretsInLogs, startTestServer, type TestServer } from './support/server.js';

const POPLIB_FETCH = fileURLToPath(new URL('./support/poplib_fetch.py', import.meta.url));
const USERS = {
  py: 'py-secret-1',
  curl: 'curl-secret-2',
  fetch: 'fetch-secret-3',
  mpop: 'mpop-secret-4',
  getmail: 'getmail-secret-5',
};
const MESSAGES: readonly TestMessage[] = corpus();
const TOTAL = MESSAGES.reduce((n, m) => n + m.canonical.length, 0);

/** Where two byte strings first differ, shown with some context. */
function firstDifference(actual: Buffer, expected: Buffer): string {
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  const show = (b: Buffer): string => JSON.stringify(b.subarray(Math.max(0, i - 40), i + 40).toString('latin1'));
  return `lengths ${actual.length} vs ${expected.length}, first difference at ${i}: got ${show(actual)}, want ${show(expected)}`;
}

function assertSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (!actual.equals(expected)) assert.fail(`${what}: ${firstDifference(actual, expected)}`);
}

/**
 * Files a client wrote, one message each with LF line ends: every corpus message exactly once,
 * equal to its canonical form with LF, after header fields the client may add in front.
 */
async function assertLfDelivery(dir: string, addable: readonly string[], mustAdd: readonly string[] = []): Promise<void> {
  const files = (await readdir(dir)).sort();
  const seen = new Map<string, string>();
  for (const f of files) {
    const actual = await readFile(join(dir, f));
    const id = testIdOf(actual);
    const message = MESSAGES.find((m) => m.id === id);
    assert.ok(message, `${f}: not one of the delivered messages (X-Test-Id ${id})`);
    assert.ok(!seen.has(message.id), `${message.id} delivered twice (${seen.get(message.id)} and ${f})`);
    seen.set(message.id, f);
    const expected = toLf(message.canonical);
    const { added, rest } = stripAddedHeaders(actual, expected, addable);
    assertSameBytes(rest, expected, `${message.id} (${f})`);
    for (const name of mustAdd) {
      assert.ok(
        added.some((a) => a.toLowerCase().startsWith(`${name.toLowerCase()}:`)),
        `${message.id}: expected a ${name} header to be added`,
      );
    }
  }
  assert.deepEqual([...seen.keys()].sort(), MESSAGES.map((m) => m.id).sort());
}

/** uid/gid of `nobody`, for getmail, which will not deliver as root. */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nobody:'));
  assert.ok(line, 'no user "nobody" in /etc/passwd');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

describe('real POP3 clients', () => {
  let srv: TestServer;
  /** A client run; if it fails, the failure also shows the server's last log lines. */
  async function client(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    try {
      return await runOk(program, args, { timeoutMs: 30_000, ...options });
    } catch (e) {
      (e as Error).message += `\n--- server log (last lines) ---\n${srv.logs.slice(-15).join('\n')}`;
      throw e;
    }
  }
  let work: string;
  let uidls: string[];
  let n = 0;
  const fresh = async (name: string): Promise<string> => {
    const dir = join(work, `${++n}-${name}`);
    await mkdir(dir, { recursive: true });
    return dir;
  };

  before(async () => {
    srv = await startTestServer({ users: USERS });
    work = await mkdtemp(join(tmpdir(), 'postern-clients-'));
    // getmail delivers as `nobody` when run as root: it must reach its Maildir.
    await chmod(work, 0o755);
    // One LMTP transaction per message, to every user at once.
    await deliverAll(srv.lmtpPort, Object.keys(USERS), MESSAGES);
    const c = await Pop3Client.connect(srv.pop3Port);
    await c.login('py', USERS.py);
    uidls = await c.listing('UIDL');
    await c.quit();
  });
  after(async () => {
    await srv?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the client programs are installed (each test below also fails without its program)', () => {
    const missing: string[] = [];
    for (const program of ['python3', 'curl', 'fetchmail', 'mpop', 'getmail']) {
      try {
        requireProgram(program);
      } catch (e) {
        missing.push((e as Error).message);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('the maildrops hold the corpus: LIST sizes are the exact CRLF octet counts', async () => {
    assert.equal(uidls.length, MESSAGES.length);
    for (const user of Object.keys(USERS) as (keyof typeof USERS)[]) {
      const c = await Pop3Client.connect(srv.pop3Port);
      await c.login(user, USERS[user]);
      assert.equal(await c.command('STAT'), `+OK ${MESSAGES.length} ${TOTAL}`);
      assert.deepEqual(
        await c.listing('LIST'),
        MESSAGES.map((m, i) => `${i + 1} ${m.canonical.length}`),
      );
      await c.quit();
    }
    // The message without a final line end comes back with one (the canonical form adds it).
    const noFinal = MESSAGES.find((m) => m.id === 'no-final-crlf') as TestMessage;
    assert.ok(!noFinal.delivered.subarray(-2).equals(Buffer.from('\r\n')));
    assert.ok(noFinal.canonical.equals(Buffer.concat([noFinal.delivered, Buffer.from('\r\n')])));
    // The big one is 5 MiB.
    assert.equal(MESSAGES.find((m) => m.id === 'big')?.canonical.length, 5 * 1024 * 1024);
  });

  describe('Python poplib', () => {
    for (const mode of ['plain', 'ssl', 'stls'] as const) {
      it(`${mode}: STAT, LIST and UIDL agree with what was delivered, and RETR returns the exact bytes`, async () => {
        const out = await fresh(`poplib-${mode}`);
        const port = mode === 'ssl' ? srv.pop3sPort : srv.pop3Port;
        const args = [POPLIB_FETCH, mode, '127.0.0.1', String(port), 'py', USERS.py, out];
        if (mode !== 'plain') args.push(srv.certFile);
        const stls = mode === 'stls' ? srv.waitForLog((r) => r.msg === 'STLS') : null;
        const { stdout } = await client('python3', args);
        const summary = JSON.parse(stdout.toString('utf8')) as { stat: [number, number]; list: string[]; uidl: string[]; capa: string[] };
        assert.deepEqual(summary.stat, [MESSAGES.length, TOTAL]);
        assert.deepEqual(
          summary.list,
          MESSAGES.map((m, i) => `${i + 1} ${m.canonical.length}`),
        );
        assert.deepEqual(summary.uidl, uidls);
        assert.equal(new Set(summary.uidl.map((l) => l.split(' ')[1])).size, MESSAGES.length);
        if (mode === 'ssl') assert.ok(!summary.capa.includes('STLS'));
        else assert.ok(summary.capa.includes('STLS'));
        for (const [i, m] of MESSAGES.entries()) {
          assertSameBytes(await readFile(join(out, `${i + 1}.eml`)), m.canonical, `${mode} RETR ${i + 1} (${m.id})`);
        }
        if (stls) assert.match(String((await stls).protocol), /^TLSv1\.[23]$/);
      });
    }
  });

  describe('curl', () => {
    const user = `curl:${USERS.curl}`;
    const url = (path: string, scheme = 'pop3', port = srv.pop3Port): string => `${scheme}://127.0.0.1:${port}/${path}`;

    it('pop3:// RETR by number returns each message exactly', async () => {
      for (const [i, m] of MESSAGES.entries()) {
        const { stdout } = await client('curl', ['-sS', '-u', user, url(String(i + 1))]);
        assertSameBytes(stdout, m.canonical, `curl RETR ${i + 1} (${m.id})`);
      }
    });

    it('pop3:// without a message number lists: LIST sizes', async () => {
      const { stdout } = await client('curl', ['-sS', '-u', user, url('')]);
      assert.equal(stdout.toString('latin1'), MESSAGES.map((m, i) => `${i + 1} ${m.canonical.length}\r\n`).join(''));
    });

    it('-X UIDL lists the same UIDLs as every other client', async () => {
      const { stdout } = await client('curl', ['-sS', '-u', user, '-X', 'UIDL', url('')]);
      const lines = stdout.toString('latin1').split('\r\n');
      assert.equal(lines.pop(), '');
      // Each maildrop has its own UIDLs, all distinct, numbered 1..n.
      assert.equal(lines.length, MESSAGES.length);
      lines.forEach((l, i) => assert.match(l, new RegExp(`^${i + 1} [\\x21-\\x7e]{1,70}$`)));
      const c = await Pop3Client.connect(srv.pop3Port);
      await c.login('curl', USERS.curl);
      assert.deepEqual(await c.listing('UIDL'), lines);
      await c.quit();
    });

    it("-X 'TOP 1 0' gives the headers and the blank line only; TOP n 2 adds two body lines", async () => {
      for (const [i, m] of MESSAGES.entries()) {
        const headerEnd = m.canonical.indexOf('\r\n\r\n') + 4;
        const { stdout } = await client('curl', ['-sS', '-u', user, '-X', `TOP ${i + 1} 0`, url('')]);
        assertSameBytes(stdout, m.canonical.subarray(0, headerEnd), `TOP ${i + 1} 0 (${m.id})`);
      }
      const dots = MESSAGES[0] as TestMessage;
      const headerEnd = dots.canonical.indexOf('\r\n\r\n') + 4;
      const twoLines = dots.canonical.indexOf('\r\n', dots.canonical.indexOf('\r\n', headerEnd) + 2) + 2;
      const { stdout } = await client('curl', ['-sS', '-u', user, '-X', 'TOP 1 2', url('')]);
      assertSameBytes(stdout, dots.canonical.subarray(0, twoLines), 'TOP 1 2');
    });

    it('pop3s:// with --cacert (implicit TLS) returns the exact bytes', async () => {
      for (const [i, m] of MESSAGES.entries()) {
        const { stdout } = await client('curl', ['-sS', '--cacert', srv.certFile, '-u', user, url(String(i + 1), 'pop3s', srv.pop3sPort)]);
        assertSameBytes(stdout, m.canonical, `pop3s RETR ${i + 1} (${m.id})`);
      }
    });

    it('--ssl-reqd pop3:// upgrades with STLS and returns the exact bytes', async () => {
      const stls = srv.waitForLog((r) => r.msg === 'STLS');
      const big = MESSAGES.findIndex((m) => m.id === 'big');
      const { stdout } = await client('curl', ['-sS', '--ssl-reqd', '--cacert', srv.certFile, '-u', user, url(String(big + 1))]);
      assertSameBytes(stdout, (MESSAGES[big] as TestMessage).canonical, 'STLS RETR big');
      await stls;
      // Without a trusted certificate curl refuses to go on.
      const untrusted = await client('curl', ['-sS', '--ssl-reqd', '-u', user, url('1')]).then(
        () => 'ok',
        (e: Error) => e.message,
      );
      assert.match(untrusted, /exited with 60/);
    });

    for (const [option, mechanism] of [
      ['AUTH=+APOP', 'APOP'],
      ['AUTH=LOGIN', 'LOGIN'],
      ['AUTH=PLAIN', 'PLAIN'],
    ] as const) {
      it(`--login-options ${option} logs in with ${mechanism}`, async () => {
        const login = srv.waitForLog((r) => r.msg === 'login' && r.user === 'curl');
        const { stdout } = await client('curl', ['-sS', '--login-options', option, '-u', user, url('2')]);
        assertSameBytes(stdout, (MESSAGES[1] as TestMessage).canonical, `${mechanism} RETR 2`);
        assert.equal((await login).mechanism, mechanism);
      });
    }
  });

  describe('fetchmail', () => {
    let home: string;
    let mda: string;

    before(async () => {
      home = await fresh('fetchmail-home');
      mda = join(home, 'mda.sh');
      // One file per message, named so that nothing is overwritten.
      await writeFile(mda, '#!/bin/sh\nf=$(mktemp "$1/msg.XXXXXXXX") && exec cat > "$f"\n', { mode: 0o755 });
    });

    /** Runs fetchmail with a private rcfile; returns the directory the MDA wrote to. */
    async function fetchmail(label: string, port: number, options: string): Promise<string> {
      const out = await fresh(`fetchmail-${label}`);
      const rc = join(home, `${label}.rc`);
      await writeFile(
        rc,
        [
          'set no syslog',
          'set no bouncemail',
          `poll 127.0.0.1 with proto POP3 port ${port}`,
          `  user "fetch" there with password "${USERS.fetch}" is "fetch" here`,
          `  options fetchall no rewrite ${options}`,
          `  mda "${mda} ${out}"`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      await client('fetchmail', ['-f', rc, '--nosyslog', '--idfile', join(home, 'ids'), '--pidfile', join(home, 'pid')], {
        env: { HOME: home, FETCHMAILHOME: home },
      });
      return out;
    }

    it('plain POP3 with keep: every message arrives intact (CRLF -> LF, a Received header added)', async () => {
      const out = await fetchmail('plain', srv.pop3Port, 'keep sslproto ""');
      await assertLfDelivery(out, ['Received'], ['Received']);
      assert.equal((await uidsOnDisk(srv.maildir('fetch'))).length, MESSAGES.length);
    });

    it('implicit TLS (--ssl --sslcertck --sslcertfile) with keep: intact', async () => {
      // fetchmail matches the certificate's DNS names only, hence sslcommonname.
      const out = await fetchmail('ssl', srv.pop3sPort, `keep ssl sslcertck sslcertfile "${srv.certFile}" sslcommonname "localhost"`);
      await assertLfDelivery(out, ['Received'], ['Received']);
    });

    it('STLS required (--sslproto tls1.2+) with keep: intact', async () => {
      const stls = srv.waitForLog((r) => r.msg === 'STLS');
      const out = await fetchmail(
        'stls',
        srv.pop3Port,
        `keep sslproto "tls1.2+" sslcertck sslcertfile "${srv.certFile}" sslcommonname "localhost"`,
      );
      await assertLfDelivery(out, ['Received'], ['Received']);
      await stls;
    });

    it('without keep: intact, and then the maildrop is empty on the server and on disk', async () => {
      const out = await fetchmail('nokeep', srv.pop3Port, 'nokeep sslproto ""');
      await assertLfDelivery(out, ['Received'], ['Received']);
      const disk = await listMaildir(srv.maildir('fetch'));
      assert.deepEqual([...disk.new, ...disk.cur], []);
      const c = await Pop3Client.connect(srv.pop3Port);
      await c.login('fetch', USERS.fetch);
      assert.equal(await c.command('STAT'), '+OK 0 0');
      await c.quit();
    });
  });

  describe('mpop', () => {
    let home: string;
    before(async () => {
      home = await fresh('mpop-home');
    });

    async function mpop(label: string, options: readonly string[]): Promise<string> {
      const maildir = await fresh(`mpop-${label}`);
      for (const sub of ['new', 'cur', 'tmp']) await mkdir(join(maildir, sub));
      await client(
        'mpop',
        [
          '--host=127.0.0.1',
          '--user=mpop',
          `--passwordeval=echo ${USERS.mpop}`,
          `--delivery=maildir,${maildir}`,
          '--only-new=off',
          '--received-header=off',
          `--uidls-file=${join(home, 'uidls')}`,
          '--quiet',
          ...options,
        ],
        { env: { HOME: home } },
      );
      assert.deepEqual(await readdir(join(maildir, 'cur')), []);
      return join(maildir, 'new');
    }

    it('plain POP3 (--auth=user --tls=off --keep=on): intact, nothing added', async () => {
      const out = await mpop('plain', [`--port=${srv.pop3Port}`, '--tls=off', '--auth=user', '--keep=on']);
      await assertLfDelivery(out, []);
    });

    it('plain POP3 with APOP (--auth=apop): intact', async () => {
      const login = srv.waitForLog((r) => r.msg === 'login' && r.user === 'mpop');
      const out = await mpop('apop', [`--port=${srv.pop3Port}`, '--tls=off', '--auth=apop', '--keep=on']);
      await assertLfDelivery(out, []);
      assert.equal((await login).mechanism, 'APOP');
    });

    it('implicit TLS (--tls=on --tls-starttls=off --tls-trust-file) with AUTH PLAIN: intact', async () => {
      const out = await mpop('tls', [
        `--port=${srv.pop3sPort}`,
        '--tls=on',
        '--tls-starttls=off',
        `--tls-trust-file=${srv.certFile}`,
        '--auth=plain',
        '--keep=on',
      ]);
      await assertLfDelivery(out, []);
    });

    it('STLS (--tls=on --tls-starttls=on) with AUTH LOGIN: intact', async () => {
      const stls = srv.waitForLog((r) => r.msg === 'STLS');
      const out = await mpop('stls', [
        `--port=${srv.pop3Port}`,
        '--tls=on',
        '--tls-starttls=on',
        `--tls-trust-file=${srv.certFile}`,
        '--auth=login',
        '--keep=on',
      ]);
      await assertLfDelivery(out, []);
      await stls;
    });

    it('--keep=off: intact, and the Maildir on the server is empty afterwards', async () => {
      const out = await mpop('nokeep', [`--port=${srv.pop3Port}`, '--tls=off', '--auth=user', '--keep=off']);
      await assertLfDelivery(out, []);
      const disk = await listMaildir(srv.maildir('mpop'));
      assert.deepEqual([...disk.new, ...disk.cur], []);
    });
  });

  describe('getmail', () => {
    async function getmail(label: string, retriever: string[]): Promise<string> {
      const dir = await fresh(`getmail-${label}`);
      await chmod(dir, 0o755);
      const maildir = join(dir, 'Maildir');
      for (const sub of ['new', 'cur', 'tmp']) await mkdir(join(maildir, sub), { recursive: true });
      const asRoot = process.getuid?.() === 0;
      if (asRoot) {
        const { uid, gid } = nobody();
        for (const p of [maildir, ...['new', 'cur', 'tmp'].map((s) => join(maildir, s))]) await chown(p, uid, gid);
      }
      const rc = join(dir, 'getmailrc');
      await writeFile(
        rc,
        [
          '[retriever]',
          ...retriever,
          'server = 127.0.0.1',
          'username = getmail',
          `password = ${USERS.getmail}`,
          '',
          '[destination]',
          'type = Maildir',
          `path = ${maildir}/`,
          ...(asRoot ? ['user = nobody'] : []),
          '',
          '[options]',
          'read_all = true',
          'delete = false',
          'verbose = 0',
          'message_log_syslog = false',
          'delivered_to = false',
          'received = false',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const state = join(dir, 'state');
      await mkdir(state);
      await client('getmail', ['--getmaildir', state, '--rcfile', rc], { env: { HOME: dir } });
      return join(maildir, 'new');
    }

    it('SimplePOP3Retriever into a Maildir: intact, nothing added', async () => {
      const out = await getmail('plain', ['type = SimplePOP3Retriever', `port = ${srv.pop3Port}`]);
      await assertLfDelivery(out, []);
    });

    it('SimplePOP3SSLRetriever (implicit TLS, the certificate as CA): intact', async () => {
      const out = await getmail('ssl', ['type = SimplePOP3SSLRetriever', `port = ${srv.pop3sPort}`, `ca_certs = ${srv.certFile}`]);
      await assertLfDelivery(out, []);
    });
  });

  it('every maildrop that was not emptied still holds the whole corpus', async () => {
    for (const user of ['py', 'curl', 'getmail']) {
      assert.equal((await uidsOnDisk(srv.maildir(user))).length, MESSAGES.length, user);
    }
  });

  it('never logs a password', () => {
    assertNoSecretsInLogs(srv.logs, Object.values(USERS));
  });
});

// /metrics after a known run: every counter moved by exactly what the run did, and the exposition
// passes `promtool check metrics` (Debian's prometheus package).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lmtpSend } from './support/lmtp-client.js';
import { address, simpleMessage } from './support/messages.js';
import { Pop3Client } from './support/pop3-client.js';
import { run } from './support/run.js';
import { startTestServer } from './support/server.js';

/** `name{labels} value` lines into a map (labels as printed, in prom-client's order). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('metrics count exactly what a run did, and promtool accepts them', async () => {
  const t = await startTestServer({ users: { alice: 'alice-secret' } });
  try {
    const one = simpleMessage('metrics-one');
    const two = simpleMessage('metrics-two', 'a second body, a little longer than the first');
    const first = await lmtpSend(t.lmtpPort, 's@example.com', [address('alice'), address('nobody')], one.delivered);
    assert.deepEqual(first.rcpt.map((r) => r.code), [250, 550]);
    const second = await lmtpSend(t.lmtpPort, 's@example.com', [address('alice')], two.delivered);
    assert.deepEqual(second.data.map((r) => r.code), [250]);

    // One failed login, then a session that reads message 1, deletes message 2 and quits.
    const ended = t.waitForLog((r) => r.msg === 'session end' && r.user === 'alice');
    const bad = await Pop3Client.connect(t.pop3Port);
    assert.match(await bad.command('USER alice'), /^\+OK/);
    assert.match(await bad.command('PASS wrong'), /^-ERR \[AUTH\]/);
    await bad.quit();
    const c = await Pop3Client.connect(t.pop3Port);
    await c.login('alice', 'alice-secret');
    const retr = await c.multi('RETR 1');
    assert.match(retr.status, /^\+OK /);
    assert.match(await c.command('DELE 2'), /^\+OK/);
    await c.quit();
    await ended;

    const port = t.server.admin?.address.port;
    assert.ok(port);
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await response.text();
    const m = parse(text);
    const expect = (key: string, value: number): void => assert.equal(m.get(key), value, key);

    expect('postern_connections_total{listener="pop3",result="accepted"}', 2);
    expect('postern_auth_attempts_total{backend="passwd-file",mechanism="USER",result="ok"}', 1);
    expect('postern_auth_attempts_total{backend="passwd-file",mechanism="USER",result="invalid"}', 1);
    expect('postern_maildrop_lock_acquisitions_total{result="acquired"}', 1);
    expect('postern_messages_retrieved_total', 1);
    expect('postern_retrieved_octets_total', one.canonical.length);
    expect('postern_messages_deleted_total', 1);
    expect('postern_sessions_active{state="authorization"}', 0);
    expect('postern_sessions_active{state="transaction"}', 0);
    expect('postern_session_duration_seconds_count', 2);
    expect('postern_command_duration_seconds_count{command="RETR"}', 1);
    expect('postern_command_duration_seconds_count{command="DELE"}', 1);
    expect('postern_command_duration_seconds_count{command="PASS"}', 2);
    expect('postern_command_duration_seconds_count{command="QUIT"}', 2);
    expect('postern_store_operation_duration_seconds_count{backend="maildir",operation="open",result="ok"}', 1);
    expect('postern_store_operation_duration_seconds_count{backend="maildir",operation="commit",result="ok"}', 1);
    expect('postern_delivery_recipients_total{protocol="lmtp",result="accepted"}', 2);
    expect('postern_delivery_recipients_total{protocol="lmtp",result="unknown_recipient"}', 1);
    expect('postern_delivery_octets_total{protocol="lmtp"}', one.canonical.length + two.canonical.length);
    assert.ok((m.get('postern_nodejs_eventloop_lag_seconds') ?? -1) >= 0, 'event-loop lag is exported');
    for (const key of m.keys()) assert.ok(!key.includes('alice'), `no per-user label: ${key}`);

    const check = await run('promtool', ['check', 'metrics'], { input: text });
    assert.equal(check.code, 0, `promtool: ${check.stdout.toString()}${check.stderr}`);
  } finally {
    await t.stop();
  }
});

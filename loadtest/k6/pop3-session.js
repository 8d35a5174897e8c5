// k6 load script: POP3 mail-fetching sessions against Postern (or any POP3 server) over raw TCP.
//
// k6 has no POP3 module; this uses the official TCP extension `k6/x/tcp` (grafana/xk6-tcp), which
// a recent k6 resolves by itself when the script imports it, or a k6 binary built with
//   xk6 build --with github.com/grafana/xk6-tcp
// The POP3 logic (command sequence, reply parsing, multi-line bodies, dot-unstuffing) lives in
// pop3-protocol.js, which our own tests run against a real server.
//
//   POP3_HOST=127.0.0.1 POP3_PORT=1110 USERS_FILE=/tmp/pop3-data/accounts.txt k6 run loadtest/k6/pop3-session.js
//
// Environment: POP3_HOST (127.0.0.1), POP3_PORT (110, or 995 with POP3_TLS), POP3_TLS (implicit
// TLS, `true`; certificates are checked unless k6's insecureSkipTLSVerify, INSECURE=true),
// USERS_FILE (`user:password` lines, as mailgen.ts writes accounts.txt), VUS (10), DURATION (30s),
// RETR (all | none | a number), DELE (true deletes what was fetched), CAPA (true sends CAPA),
// TIMEOUT_MS (30000, idle limit per read). Each VU always uses the same account (VU n takes line
// n, wrapping), so give at least as many accounts as VUs: two sessions on one maildrop get
// `-ERR [IN-USE]`.

import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { Socket } from 'k6/x/tcp';
import { parseAccounts, runSession } from './pop3-protocol.js';

const env = __ENV;
const TLS = env.POP3_TLS === 'true';
const HOST = env.POP3_HOST || '127.0.0.1';
const PORT = Number(env.POP3_PORT || (TLS ? 995 : 110));
const TIMEOUT_MS = Number(env.TIMEOUT_MS || 30000);
const RETR = env.RETR === undefined || env.RETR === 'all' || env.RETR === 'none' ? env.RETR || 'all' : Number(env.RETR);
const ACCOUNTS = parseAccounts(open(env.USERS_FILE || 'accounts.txt'));

export const options = {
  vus: Number(env.VUS || 10),
  duration: env.DURATION || '30s',
  insecureSkipTLSVerify: env.INSECURE === 'true',
  thresholds: {
    pop3_session_ok: ['rate>0.99'],
  },
};

const sessionOk = new Rate('pop3_session_ok');
const sessionTime = new Trend('pop3_session_duration', true);
const loginTime = new Trend('pop3_login_duration', true);
const retrOctets = new Counter('pop3_retr_octets');
const retrMessages = new Counter('pop3_retr_messages');
const failures = new Counter('pop3_failures');

/** The extension's socket as the transport pop3-protocol.js reads from and writes to. */
function tcpTransport(socket) {
  const chunks = [];
  let waiter = null;
  let closed = false;
  let failure = null;
  const wake = () => {
    if (waiter === null) return;
    const w = waiter;
    waiter = null;
    if (chunks.length > 0) w.resolve(chunks.shift());
    else if (failure !== null) w.reject(failure);
    else if (closed) w.resolve(null);
  };
  socket.on('data', (data) => {
    chunks.push(new Uint8Array(data));
    wake();
  });
  socket.on('close', () => {
    closed = true;
    wake();
  });
  socket.on('error', (err) => {
    failure = err instanceof Error ? err : new Error(String(err));
    wake();
  });
  socket.on('timeout', () => {
    failure = new Error(`timeout: nothing from the server for ${TIMEOUT_MS} ms`);
    socket.destroy();
    wake();
  });
  return {
    write: (text) => (typeof socket.writeAsync === 'function' ? socket.writeAsync(text) : socket.write(text)),
    read: () => {
      if (chunks.length > 0) return Promise.resolve(chunks.shift());
      if (failure !== null) return Promise.reject(failure);
      if (closed) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
  };
}

export default async function () {
  const account = ACCOUNTS[(__VU - 1) % ACCOUNTS.length];
  const socket = new Socket({ tags: { protocol: TLS ? 'pop3s' : 'pop3' } });
  const transport = tcpTransport(socket);
  let stage = 'connect';
  try {
    const target = { host: HOST, port: PORT, tls: TLS };
    // Older releases of the extension return a Promise from connect(); newer ones have connectAsync().
    await (typeof socket.connectAsync === 'function' ? socket.connectAsync(target) : socket.connect(target));
    socket.setTimeout(TIMEOUT_MS);
    stage = 'session';
    const result = await runSession(transport, {
      user: account.user,
      password: account.password,
      capa: env.CAPA === 'true',
      retr: RETR,
      dele: env.DELE === 'true',
    });
    sessionOk.add(1);
    sessionTime.add(result.sessionMs);
    loginTime.add(result.loginMs);
    retrOctets.add(result.octets);
    retrMessages.add(result.retrieved.length);
    check(result, { 'fetched every message': (r) => RETR !== 'all' || r.retrieved.length === r.stat.count });
  } catch (e) {
    sessionOk.add(0);
    const where = e && e.stage ? e.stage : stage;
    const code = e && e.reply && e.reply.code ? e.reply.code : 'none';
    failures.add(1, { stage: where, code });
    console.warn(`${account.user}: ${e && e.message ? e.message : e}`);
  } finally {
    if (socket.ready_state !== 'destroyed') socket.destroy();
  }
}

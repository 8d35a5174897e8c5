/**
 * Maildrop locks shared by the worker processes of one node. The primary process keeps the
 * table; workers ask over the cluster IPC channel. When a worker dies, the primary drops its
 * locks at once, so a crash never leaves a stale lock (nothing to expire, nothing to clean).
 */
import { randomBytes } from 'node:crypto';
import type { LoginDelayGate, LoginHistory } from './login-delay.js';
import type { LoginAttempt, LoginThrottle, ThrottleTable, ThrottleVerdict } from './throttle.js';
import type { Lease, LockManager } from './types.js';

type Request =
  | { readonly postern: 'lock'; readonly op: 'acquire'; readonly id: number; readonly key: string }
  | { readonly postern: 'lock'; readonly op: 'release'; readonly id: number; readonly key: string; readonly token: string }
  | { readonly postern: 'lock'; readonly op: 'login-delay'; readonly id: number; readonly key: string; readonly delayMs: number }
  | { readonly postern: 'lock'; readonly op: ThrottleOp; readonly id: number; readonly ip: string; readonly username: string };

type ThrottleOp = 'throttle-check' | 'throttle-failure' | 'throttle-success';

type Response = {
  readonly postern: 'lock-reply';
  readonly id: number;
  readonly token: string | null;
  readonly fence: number;
  /** For throttle requests: the verdict (check), or null; absent when the primary keeps no throttle. */
  readonly verdict?: ThrottleVerdict | null;
};

const DISCONNECTED: Response = { postern: 'lock-reply', id: -1, token: null, fence: 0 };

/** The primary's lock table: at most one holder per key; holders are worker ids. */
export class LockTable {
  readonly #holders = new Map<string, { owner: string; token: string }>();
  readonly #byOwner = new Map<string, Set<string>>();
  #fence = 0;

  acquire(owner: string, key: string): { token: string; fence: number } | null {
    if (this.#holders.has(key)) return null;
    const token = randomBytes(12).toString('base64url');
    this.#holders.set(key, { owner, token });
    let keys = this.#byOwner.get(owner);
    if (!keys) this.#byOwner.set(owner, (keys = new Set()));
    keys.add(key);
    return { token, fence: ++this.#fence };
  }

  release(key: string, token: string): void {
    const h = this.#holders.get(key);
    if (!h || h.token !== token) return;
    this.#holders.delete(key);
    this.#byOwner.get(h.owner)?.delete(key);
  }

  /** Everything `owner` held (its process died). Returns how many locks were dropped. */
  releaseOwner(owner: string): number {
    const keys = this.#byOwner.get(owner);
    this.#byOwner.delete(owner);
    if (!keys) return 0;
    for (const key of keys) this.#holders.delete(key);
    return keys.size;
  }

  get size(): number {
    return this.#holders.size;
  }
}

/** The part of a cluster Worker / child process the primary uses. */
export interface IpcPeer {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
}

function isRequest(m: unknown): m is Request {
  return typeof m === 'object' && m !== null && (m as { postern?: unknown }).postern === 'lock';
}

/** Primary side: answer lock (and LOGIN-DELAY, login throttle) requests from one worker. */
export function serveLocks(table: LockTable, owner: string, peer: IpcPeer, history?: LoginHistory, throttle?: ThrottleTable): void {
  peer.on('message', (m) => {
    if (!isRequest(m)) return;
    if (m.op === 'throttle-check' || m.op === 'throttle-failure' || m.op === 'throttle-success') {
      const attempt = { ip: m.ip, username: m.username };
      let verdict: ThrottleVerdict | null | undefined;
      if (throttle) {
        verdict = null;
        if (m.op === 'throttle-check') verdict = throttle.check(attempt);
        else if (m.op === 'throttle-failure') throttle.recordFailure(attempt);
        else throttle.recordSuccess(attempt);
      }
      const reply: Response = { postern: 'lock-reply', id: m.id, token: null, fence: 0, ...(verdict === undefined ? {} : { verdict }) };
      peer.send(reply);
    } else if (m.op === 'login-delay') {
      // `token` non-null means admitted.
      const admitted = history ? history.admit(m.key, m.delayMs) : true;
      const reply: Response = { postern: 'lock-reply', id: m.id, token: admitted ? 'admitted' : null, fence: 0 };
      peer.send(reply);
    } else if (m.op === 'acquire') {
      const got = table.acquire(owner, m.key);
      const reply: Response = { postern: 'lock-reply', id: m.id, token: got?.token ?? null, fence: got?.fence ?? 0 };
      peer.send(reply);
    } else if (m.op === 'release') {
      table.release(m.key, m.token);
      const reply: Response = { postern: 'lock-reply', id: m.id, token: null, fence: 0 };
      peer.send(reply);
    }
  });
}

/** Worker side: a LockManager (and LOGIN-DELAY gate, login throttle) whose tables live in the primary process. */
export class IpcLockManager implements LockManager, LoginDelayGate, LoginThrottle {
  readonly kind = 'ipc';
  readonly #channel: IpcPeer;
  readonly #pending = new Map<number, (r: Response) => void>();
  #next = 0;

  constructor(channel: IpcPeer) {
    this.#channel = channel;
    channel.on('message', (m) => {
      const r = m as Response;
      if (typeof r !== 'object' || r === null || r.postern !== 'lock-reply') return;
      const resolve = this.#pending.get(r.id);
      if (resolve) {
        this.#pending.delete(r.id);
        resolve(r);
      }
    });
  }

  #ask(
    request:
      | { op: 'acquire'; key: string }
      | { op: 'release'; key: string; token: string }
      | { op: 'login-delay'; key: string; delayMs: number }
      | { op: ThrottleOp; ip: string; username: string },
  ): Promise<Response> {
    const id = ++this.#next;
    return new Promise<Response>((resolve, reject) => {
      this.#pending.set(id, (r) => (r === DISCONNECTED ? reject(new Error('lock service unavailable')) : resolve(r)));
      try {
        this.#channel.send({ postern: 'lock', id, ...request });
      } catch (e) {
        this.#pending.delete(id);
        reject(e as Error);
      }
    });
  }

  /** The channel to the primary closed: fail every waiting request (logins get [SYS/TEMP]). */
  disconnected(): void {
    for (const resolve of this.#pending.values()) resolve(DISCONNECTED);
    this.#pending.clear();
  }

  async admit(key: string, delayMs: number): Promise<boolean> {
    const r = await this.#ask({ op: 'login-delay', key, delayMs });
    return r.token !== null;
  }

  async #throttle(op: ThrottleOp, attempt: LoginAttempt): Promise<ThrottleVerdict | null> {
    const r = await this.#ask({ op, ip: attempt.ip, username: attempt.username });
    if (r.verdict === undefined) throw new Error('the primary process keeps no login throttle');
    return r.verdict;
  }

  async checkLogin(attempt: LoginAttempt): Promise<ThrottleVerdict> {
    const verdict = await this.#throttle('throttle-check', attempt);
    if (verdict === null) throw new Error('login throttle: no verdict from the primary process');
    return verdict;
  }

  async recordFailure(attempt: LoginAttempt): Promise<void> {
    await this.#throttle('throttle-failure', attempt);
  }

  async recordSuccess(attempt: LoginAttempt): Promise<void> {
    await this.#throttle('throttle-success', attempt);
  }

  async acquire(key: string): Promise<Lease | null> {
    const r = await this.#ask({ op: 'acquire', key });
    if (r.token === null) return null;
    const token = r.token;
    const controller = new AbortController();
    let held = true;
    return {
      key,
      token,
      fence: r.fence,
      signal: controller.signal,
      held: () => held,
      release: async () => {
        if (!held) return;
        held = false;
        controller.abort();
        await this.#ask({ op: 'release', key, token });
      },
    };
  }
}

/**
 * Maildrop locks shared by the worker processes of one node. The primary process keeps the
 * table; workers ask over the cluster IPC channel. When a worker dies, the primary drops its
 * locks at once, so a crash never leaves a stale lock (nothing to expire, nothing to clean).
 *
 * Requests made in the same tick leave as one IPC message, and the replies to them come back as
 * one: a login's throttle record and its lock request share a message, and under load so do
 * other sessions' requests. Each IPC message costs both processes a syscall, JSON and an event,
 * which was about a tenth of a busy node's CPU.
 */
import type { LoginDelayGate, LoginHistory } from './login-delay.js';
import type { LoginAttempt, LoginThrottle, ThrottleTable, ThrottleVerdict } from './throttle.js';
import type { Lease, LockManager } from './types.js';

type Request =
  | { readonly postern: 'lock'; readonly op: 'acquire'; readonly id: number; readonly key: string }
  | { readonly postern: 'lock'; readonly op: 'release'; readonly id: number; readonly key: string; readonly token: string }
  | { readonly postern: 'lock'; readonly op: 'login-delay'; readonly id: number; readonly key: string; readonly delayMs: number }
  | { readonly postern: 'lock'; readonly op: ThrottleOp; readonly id: number; readonly ip: string; readonly username: string };

type ThrottleOp = 'throttle-check' | 'throttle-failure' | 'throttle-success';

/** Several requests in one message (made in the same tick). */
type Batch = { readonly postern: 'lock'; readonly op: 'batch'; readonly requests: readonly Request[] };

type Response = {
  readonly postern: 'lock-reply';
  readonly id: number;
  readonly token: string | null;
  readonly fence: number;
  /** For throttle requests: the verdict (check), or null; absent when the primary keeps no throttle. */
  readonly verdict?: ThrottleVerdict | null;
};

/** The replies to a batch, in one message. */
type Replies = { readonly postern: 'lock-replies'; readonly replies: readonly Response[] };

const DISCONNECTED: Response = { postern: 'lock-reply', id: -1, token: null, fence: 0 };

/**
 * Messages for one peer, sent together at the end of the tick: one alone as itself, several as
 * one message made by `wrap`.
 */
class Outbox<T> {
  #queue: T[] = [];
  constructor(
    private readonly peer: IpcPeer,
    private readonly wrap: (items: T[]) => unknown,
    private readonly onError: (items: T[], error: Error) => void = () => undefined,
  ) {}

  push(item: T): void {
    this.#queue.push(item);
    if (this.#queue.length === 1) queueMicrotask(this.#flush);
  }

  readonly #flush = (): void => {
    const items = this.#queue;
    this.#queue = [];
    try {
      this.peer.send(items.length === 1 ? items[0] : this.wrap(items));
    } catch (e) {
      this.onError(items, e as Error);
    }
  };
}

/** The primary's lock table: at most one holder per key; holders are worker ids. */
export class LockTable {
  readonly #holders = new Map<string, { owner: string; token: string }>();
  readonly #byOwner = new Map<string, Set<string>>();
  #fence = 0;

  acquire(owner: string, key: string): { token: string; fence: number } | null {
    if (this.#holders.has(key)) return null;
    const fence = ++this.#fence;
    // Tokens only tell this table's leases apart: the fence number is unique here.
    const token = `t${fence}`;
    this.#holders.set(key, { owner, token });
    let keys = this.#byOwner.get(owner);
    if (!keys) this.#byOwner.set(owner, (keys = new Set()));
    keys.add(key);
    return { token, fence };
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

function isRequest(m: unknown): m is Request | Batch {
  return typeof m === 'object' && m !== null && (m as { postern?: unknown }).postern === 'lock';
}

/** Primary side: answer lock (and LOGIN-DELAY, login throttle) requests from one worker. */
export function serveLocks(table: LockTable, owner: string, peer: IpcPeer, history?: LoginHistory, throttle?: ThrottleTable): void {
  const replies = new Outbox<Response>(peer, (items): Replies => ({ postern: 'lock-replies', replies: items }));
  const answer = (m: Request): void => {
    if (m.op === 'throttle-check' || m.op === 'throttle-failure' || m.op === 'throttle-success') {
      const attempt = { ip: m.ip, username: m.username };
      let verdict: ThrottleVerdict | null | undefined;
      if (throttle) {
        verdict = null;
        if (m.op === 'throttle-check') verdict = throttle.check(attempt);
        else if (m.op === 'throttle-failure') throttle.recordFailure(attempt);
        else throttle.recordSuccess(attempt);
      }
      replies.push({ postern: 'lock-reply', id: m.id, token: null, fence: 0, ...(verdict === undefined ? {} : { verdict }) });
    } else if (m.op === 'login-delay') {
      // `token` non-null means admitted.
      const admitted = history ? history.admit(m.key, m.delayMs) : true;
      replies.push({ postern: 'lock-reply', id: m.id, token: admitted ? 'admitted' : null, fence: 0 });
    } else if (m.op === 'acquire') {
      const got = table.acquire(owner, m.key);
      replies.push({ postern: 'lock-reply', id: m.id, token: got?.token ?? null, fence: got?.fence ?? 0 });
    } else if (m.op === 'release') {
      table.release(m.key, m.token);
      replies.push({ postern: 'lock-reply', id: m.id, token: null, fence: 0 });
    }
  };
  peer.on('message', (m) => {
    if (!isRequest(m)) return;
    if (m.op === 'batch') for (const r of m.requests) answer(r);
    else answer(m);
  });
}

/** Worker side: a LockManager (and LOGIN-DELAY gate, login throttle) whose tables live in the primary process. */
export class IpcLockManager implements LockManager, LoginDelayGate, LoginThrottle {
  readonly kind = 'ipc';
  readonly #pending = new Map<number, (r: Response | Error) => void>();
  readonly #outbox: Outbox<Request>;
  #next = 0;

  constructor(channel: IpcPeer) {
    this.#outbox = new Outbox<Request>(
      channel,
      (requests): Batch => ({ postern: 'lock', op: 'batch', requests }),
      (requests, error) => {
        for (const r of requests) this.#settle(r.id, error);
      },
    );
    channel.on('message', (m) => {
      const r = m as Response | Replies;
      if (typeof r !== 'object' || r === null) return;
      if (r.postern === 'lock-reply') this.#settle(r.id, r);
      else if (r.postern === 'lock-replies') for (const one of r.replies) this.#settle(one.id, one);
    });
  }

  #settle(id: number, r: Response | Error): void {
    const resolve = this.#pending.get(id);
    if (resolve) {
      this.#pending.delete(id);
      resolve(r);
    }
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
      this.#pending.set(id, (r) => {
        if (r instanceof Error) reject(r);
        else if (r === DISCONNECTED) reject(new Error('lock service unavailable'));
        else resolve(r);
      });
      this.#outbox.push({ postern: 'lock', id, ...request } as Request);
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

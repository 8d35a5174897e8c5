/**
 * The S3 side: a client with pooled keep-alive sockets and per-attempt timeouts, and `S3Objects`,
 * the only code that talks to it. Transient failures (5xx, throttling, timeouts, resets) are
 * retried here with full-jitter backoff until a deadline, then become temporary `backend`
 * StoreErrors; the SDK's own retries are off so that a PUT can reopen its spooled body.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { StoreError } from '@postern/mailstore';
import type { OperationTimer } from './redis.js';
import type { S3Settings } from './settings.js';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/**
 * An S3 client for the settings. Credentials default to the standard AWS chain (environment,
 * profile, instance role).
 */
export function createS3Client(settings: S3Settings, credentials?: S3Credentials): S3Client {
  const agentOptions = { keepAlive: true, maxSockets: settings.maxSockets, keepAliveMsecs: 1_000 };
  return new S3Client({
    region: settings.region,
    ...(settings.endpoint !== undefined ? { endpoint: settings.endpoint } : {}),
    forcePathStyle: settings.forcePathStyle,
    ...(credentials !== undefined ? { credentials } : {}),
    maxAttempts: 1,
    // No whole-body checksums: they would read a GET twice or hold a PUT; S3 checks Content-Length.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: settings.connectTimeoutMs,
      // Until the response headers (a PUT's upload included); by default the SDK would only warn.
      requestTimeout: settings.requestTimeoutMs,
      throwOnRequestTimeout: true,
      // No socket idle timeout: a body paused by a slow POP3 client is not stalled (the message
      // stream watches for stalls itself, only while the reader wants data).
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    },
  });
}

interface SdkError {
  name?: string;
  code?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'TooManyRequestsException', 'RequestTimeout', 'TimeoutError', 'InternalError', 'ServiceUnavailable']);

/** Worth retrying: no HTTP answer at all (reset, refused, timeout), a 5xx, a 429, throttling. */
export function isTransient(error: unknown): boolean {
  const e = error as SdkError;
  if (e?.name === 'AbortError' || e?.name === 'CredentialsProviderError') return false;
  if (e?.$retryable) return true;
  if (THROTTLING.has(e?.name ?? '')) return true;
  const status = e?.$metadata?.httpStatusCode;
  if (status === undefined) return true;
  return status >= 500 || status === 429;
}

function statusOf(error: unknown): number | undefined {
  return (error as SdkError)?.$metadata?.httpStatusCode;
}

export interface S3Listing {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
}

/** Bytes and requests, for tests and the benchmark. */
export interface S3Stats {
  requests: number;
  /** Sum of the Content-Length of GET responses (what was asked of S3, an upper bound of what was read). */
  getBytes: number;
  putBytes: number;
}

export interface S3ObjectsOptions {
  readonly bucket: string;
  /**
   * S3_REQUEST_TIMEOUT_MS, for the PUT's own timeout: a PUT gets this plus 1 ms per KiB of body
   * (a floor of 1 MB/s), since its request lasts as long as the upload. Default 30000.
   */
  readonly requestTimeoutMs?: number;
  readonly retryDeadlineMs?: number;
  readonly timer?: OperationTimer;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Object operations on one bucket, retried and timed. */
export class S3Objects {
  readonly client: S3Client;
  readonly bucket: string;
  readonly stats: S3Stats = { requests: 0, getBytes: 0, putBytes: 0 };
  readonly #deadlineMs: number;
  readonly #requestTimeoutMs: number;
  readonly #timer: OperationTimer | undefined;

  constructor(client: S3Client, options: S3ObjectsOptions) {
    this.client = client;
    this.bucket = options.bucket;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#deadlineMs = options.retryDeadlineMs ?? 15_000;
    this.#timer = options.timer;
  }

  /**
   * Runs `attempt` until it succeeds, fails for good, or the deadline leaves no room for another
   * try. `attempt` gets the attempt number (1-based).
   */
  async #retry<T>(operation: string, signal: AbortSignal | undefined, attempt: (n: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.#deadlineMs;
    for (let n = 1; ; n++) {
      this.stats.requests++;
      const start = process.hrtime.bigint();
      let result = 'ok';
      try {
        return await attempt(n);
      } catch (error) {
        result = 'error';
        if (error instanceof StoreError) throw error;
        if (signal?.aborted) throw new StoreError('backend', `s3 ${operation} aborted`, { cause: signal.reason, temporary: true });
        const backoff = Math.random() * Math.min(2_000, 50 * 2 ** n);
        if (!isTransient(error) || Date.now() + backoff >= deadline) {
          throw new StoreError('backend', `s3 ${operation} failed: ${(error as Error).name}: ${(error as Error).message}`, {
            cause: error,
            temporary: true,
          });
        }
        await sleep(backoff, signal).catch(() => undefined);
      } finally {
        this.#timer?.observe({ backend: 's3', operation, result }, Number(process.hrtime.bigint() - start) / 1e9);
      }
    }
  }

  /**
   * PUT with `If-None-Match: *` (never overwrites). `body` is called once per attempt, so a
   * spooled file is reopened for a retry. A 412 on a retry means an earlier attempt landed: the
   * object is checked by size and accepted.
   */
  async put(key: string, size: number, body: () => Buffer | Readable, signal?: AbortSignal): Promise<void> {
    const requestTimeout = this.#requestTimeoutMs + Math.ceil(size / 1024);
    await this.#retry('put', signal, async (n) => {
      const payload = body();
      try {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: payload, ContentLength: size, IfNoneMatch: '*' }),
          signal ? { abortSignal: signal, requestTimeout } : { requestTimeout },
        );
      } catch (error) {
        // A file stream the failed attempt did not read to its end still holds its descriptor.
        if (!Buffer.isBuffer(payload)) payload.destroy();
        if (statusOf(error) !== 412) throw error;
        if (n === 1 || (await this.size(key, signal)) !== size) {
          throw new StoreError('backend', `s3 put: ${key} already exists`, { cause: error, temporary: true });
        }
      }
    });
    this.stats.putBytes += size;
  }

  /** GET (optionally a byte range); resolves once the response headers are in. */
  async get(key: string, options: { range?: [number, number]; signal?: AbortSignal } = {}): Promise<{ body: Readable; length: number }> {
    const { range, signal } = options;
    return this.#retry(range ? 'get-range' : 'get', signal, async () => {
      try {
        const out = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range[0]}-${range[1]}` } : {}) }),
          signal ? { abortSignal: signal } : {},
        );
        const length = Number(out.ContentLength ?? 0);
        this.stats.getBytes += length;
        return { body: out.Body as Readable, length };
      } catch (error) {
        const name = (error as SdkError).name;
        if (name === 'NoSuchKey' || statusOf(error) === 404) {
          throw new StoreError('not-found', `message object ${key} is gone`, { cause: error, temporary: false });
        }
        throw error;
      }
    });
  }

  /** Content-Length of an object, or null when there is none. */
  async size(key: string, signal?: AbortSignal): Promise<number | null> {
    return this.#retry('head', signal, async () => {
      try {
        const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), signal ? { abortSignal: signal } : {});
        return Number(out.ContentLength ?? 0);
      } catch (error) {
        if (statusOf(error) === 404) return null;
        throw error;
      }
    });
  }

  /**
   * DeleteObjects in batches of up to 1000. Resolves with the keys S3 could not delete (the
   * whole batch when the request itself failed); deleting a missing key succeeds.
   */
  async deleteMany(keys: readonly string[]): Promise<string[]> {
    const failed: string[] = [];
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const out = await this.#retry('delete', undefined, () =>
          this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
        );
        for (const e of out.Errors ?? []) if (e.Key !== undefined) failed.push(e.Key);
      } catch {
        failed.push(...batch);
      }
    }
    return failed;
  }

  /** Every object under `prefix`, a page (up to 1000) at a time. */
  async *list(prefix: string): AsyncGenerator<S3Listing[]> {
    let token: string | undefined;
    do {
      const out = await this.#retry('list', undefined, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      const page: S3Listing[] = [];
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined) continue;
        page.push({ key: o.Key, size: Number(o.Size ?? 0), lastModified: o.LastModified ?? new Date(0) });
      }
      yield page;
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }
}

/**
 * Real S3 for tests: versitygw (Apache-2.0) with its POSIX backend on a private temp dir, as a
 * plain process on 127.0.0.1 and a free port, with one bucket created.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './ports.js';
import { ManagedProcess, findProgram } from './process.js';

export const VERSITYGW_INSTALL = 'go install github.com/versity/versitygw/cmd/versitygw@v1.7.0';

/** Where `go install` puts versitygw, besides PATH. */
export function findVersitygw(): string {
  const extra = [process.env.GOBIN, process.env.GOPATH && join(process.env.GOPATH, 'bin'), join(homedir(), 'go', 'bin'), '/usr/local/bin'];
  return findProgram('versitygw', VERSITYGW_INSTALL, extra.filter((d): d is string => Boolean(d)));
}

/** `versitygw` arguments: loopback only, POSIX backend rooted at `dir`. */
export function versitygwArgs(port: number, dir: string): string[] {
  return ['--port', `127.0.0.1:${port}`, '--region', 'us-east-1', '--quiet', 'posix', dir];
}

/** The single root account, passed by environment so the secret is not on the command line. */
/**
 * versitygw's credentials, and keep-alive: without VGW_KEEP_ALIVE it closes every connection
 * after one response, unlike S3 services, which would make every request pay a TCP handshake.
 */
export function versitygwEnv(c: Pick<S3Connection, 'accessKeyId' | 'secretAccessKey'>, keepAlive = true): Record<string, string> {
  return { ROOT_ACCESS_KEY_ID: c.accessKeyId, ROOT_SECRET_ACCESS_KEY: c.secretAccessKey, VGW_KEEP_ALIVE: String(keepAlive) };
}

export interface S3Options {
  /** Keep client connections open between requests (default true, as S3 services do). */
  readonly keepAlive?: boolean;
  readonly bucket?: string;
}

export interface S3Connection {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** The environment the S3 store reads (STORE=s3 and its settings). */
export function s3Env(c: S3Connection): Record<string, string> {
  return {
    STORE: 's3',
    S3_ENDPOINT: c.endpoint,
    S3_BUCKET: c.bucket,
    S3_REGION: c.region,
    S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: c.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.secretAccessKey,
  };
}

/** An S3 client for the server (path-style addressing). Destroy it when done. */
export function s3Client(c: S3Connection): S3Client {
  return new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: true,
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey },
  });
}

/** Creates the bucket (an existing one owned by the same account is fine). */
export async function createBucket(c: S3Connection): Promise<void> {
  const client = s3Client(c);
  try {
    await client.send(new CreateBucketCommand({ Bucket: c.bucket }));
  } catch (e) {
    if ((e as Error).name !== 'BucketAlreadyOwnedByYou') throw e;
  } finally {
    client.destroy();
  }
}

export interface S3Server extends S3Connection {
  readonly env: Record<string, string>;
  /** The backend root directory (each bucket is a subdirectory). */
  readonly dir: string;
  readonly proc: ManagedProcess;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** Starts versitygw on a free port with a fresh bucket (default `postern-test`). */
export async function startS3(options: S3Options = {}): Promise<S3Server> {
  const program = findVersitygw();
  const dir = await mkdtemp(join(tmpdir(), 'postern-s3-'));
  const port = await freePort();
  const conn: S3Connection = {
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    bucket: options.bucket ?? 'postern-test',
    accessKeyId: `testkit${randomBytes(6).toString('hex')}`,
    secretAccessKey: randomBytes(24).toString('base64url'),
  };
  let proc: ManagedProcess | null = null;
  const stop = async () => {
    await proc?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    proc = await ManagedProcess.start({
      name: 'versitygw',
      program,
      args: versitygwArgs(port, dir),
      env: versitygwEnv(conn, options.keepAlive ?? true),
      port,
      cwd: dir,
    });
    await createBucket(conn);
    return { ...conn, env: s3Env(conn), dir, proc, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

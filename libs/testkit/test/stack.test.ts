// npm run stack:up / stack:down end to end, in a private STACK_DIR.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { pollUntil, redisCommand, s3Client } from '../src/index.js';

const run = promisify(execFile);
const root = new URL('../../..', import.meta.url).pathname;
const stackDir = mkdtempSync(join(tmpdir(), 'postern-stack-'));

function npmRun(script: string): Promise<{ stdout: string; stderr: string }> {
  return run('npm', ['run', '-s', script], { cwd: root, env: { ...process.env, STACK_DIR: stackDir }, timeout: 120_000 });
}

/** stack.env as a map (the same KEY=value lines `set -a; . var/stack.env` reads). */
function stackEnv(): Map<string, string> {
  const lines = readFileSync(join(stackDir, 'stack.env'), 'utf8').trim().split('\n');
  return new Map(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
}

function pids(): Map<string, number> {
  const lines = readFileSync(join(stackDir, 'stack.pids'), 'utf8').trim().split('\n');
  return new Map(lines.map((l) => l.split(' ')).map(([name, pid]) => [name!, Number(pid)] as [string, number]));
}

const alive = (pid: number) => existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '';

function connection(env: Map<string, string>) {
  return {
    endpoint: env.get('S3_ENDPOINT')!,
    region: env.get('S3_REGION')!,
    bucket: env.get('S3_BUCKET')!,
    accessKeyId: env.get('AWS_ACCESS_KEY_ID')!,
    secretAccessKey: env.get('AWS_SECRET_ACCESS_KEY')!,
  };
}

before(async () => {
  const { stdout } = await npmRun('stack:up');
  assert.match(stdout, /stack up: Redis redis:\/\/127\.0\.0\.1:\d+/);
});

after(async () => {
  if (existsSync(join(stackDir, 'stack.pids'))) await npmRun('stack:down');
  rmSync(stackDir, { recursive: true, force: true });
});

test('stack:up writes stack.env with Redis and the S3 store settings, and the servers answer', async () => {
  const env = stackEnv();
  assert.deepEqual([...env.keys()].sort(), [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'REDIS_URL',
    'S3_BUCKET',
    'S3_ENDPOINT',
    'S3_FORCE_PATH_STYLE',
    'S3_REGION',
    'STORE',
  ]);
  const redisPort = Number(new URL(env.get('REDIS_URL')!).port);
  assert.equal(await redisCommand(redisPort, ['SET', 'stack-key', 'kept']), 'OK');
  assert.deepEqual(await redisCommand(redisPort, ['CONFIG', 'GET', 'appendonly']), ['appendonly', 'yes']);
  const client = s3Client(connection(env));
  try {
    await client.send(new PutObjectCommand({ Bucket: env.get('S3_BUCKET'), Key: 'kept.eml', Body: 'hello' }));
  } finally {
    client.destroy();
  }
  // the file is sourceable by a shell
  const { stdout } = await run('sh', ['-c', `set -a; . ${join(stackDir, 'stack.env')}; printf %s "$S3_ENDPOINT"`]);
  assert.equal(stdout, env.get('S3_ENDPOINT'));
});

test('stack:up again says it is already running and starts nothing', async () => {
  const before = pids();
  const { stdout } = await npmRun('stack:up');
  assert.match(stdout, /already running/);
  assert.deepEqual(pids(), before);
});

test('stack:down stops exactly those PIDs; stack:up again has the same ports and the data', async () => {
  const env = stackEnv();
  const first = pids();
  assert.deepEqual([...first.keys()].sort(), ['redis-server', 'versitygw']);
  await npmRun('stack:down');
  assert.equal(existsSync(join(stackDir, 'stack.pids')), false);
  for (const pid of first.values()) assert.equal(alive(pid), false, `pid ${pid} still running`);

  await npmRun('stack:up');
  assert.deepEqual(stackEnv(), env);
  const redisPort = Number(new URL(env.get('REDIS_URL')!).port);
  assert.equal(await redisCommand(redisPort, ['GET', 'stack-key']), 'kept');
  const client = s3Client(connection(env));
  try {
    const got = await client.send(new GetObjectCommand({ Bucket: env.get('S3_BUCKET'), Key: 'kept.eml' }));
    assert.equal(await got.Body!.transformToString(), 'hello');
  } finally {
    client.destroy();
  }
});

test('stack:up restarts a stack with a dead member', async () => {
  const before = pids();
  process.kill(before.get('versitygw')!, 'SIGKILL');
  await pollUntil('versitygw gone', 10_000, async () => (alive(before.get('versitygw')!) ? undefined : true));
  const { stdout } = await npmRun('stack:up');
  assert.match(stdout, /stack up/);
  const now = pids();
  assert.notEqual(now.get('versitygw'), before.get('versitygw'));
  assert.equal(alive(before.get('redis-server')!), false, 'the surviving redis-server was stopped and started again');
  assert.ok(alive(now.get('redis-server')!));
});

test('stack:down does not signal a PID that now belongs to another program', async () => {
  const real = readFileSync(join(stackDir, 'stack.pids'), 'utf8');
  writeFileSync(join(stackDir, 'stack.pids'), `redis-server ${process.pid}\n`);
  const { stdout } = await npmRun('stack:down');
  assert.match(stdout, new RegExp(`pid ${process.pid} is now .*not signalled`));
  assert.equal(existsSync(join(stackDir, 'stack.pids')), false);
  writeFileSync(join(stackDir, 'stack.pids'), real); // the real servers are stopped by after()
});

export { freePort } from './ports.js';
export { ManagedProcess, findProgram, waitForPort, type ManagedProcessOptions } from './process.js';
export {
  startRedis,
  startRedisCluster,
  startRedisSentinel,
  redisCommand,
  redisServerArgs,
  pollUntil,
  RedisReplyError,
  type HostPort,
  type RedisOptions,
  type RedisServer,
  type RedisCluster,
  type RedisClusterOptions,
  type RedisSentinelGroup,
  type RedisSentinelOptions,
  type RespValue,
} from './redis.js';
export {
  startS3,
  s3Client,
  s3Env,
  createBucket,
  findVersitygw,
  versitygwArgs,
  versitygwEnv,
  VERSITYGW_INSTALL,
  type S3Connection,
  type S3Options,
  type S3Server,
} from './s3.js';
export { startSlapd, makeTestCertificates, runProgram, SLAPD_BASE_DN, SLAPD_DEFAULT_USERS, SLAPD_DEFAULT_GROUPS, type Slapd, type SlapdOptions, type SlapdUser, type SlapdGroup, type TestCertificates } from './slapd.js';
export { startSambaAd, SAMBA_BASE_DN, SAMBA_DOMAIN, SAMBA_GROUPS, SAMBA_REALM, SAMBA_USERS, type SambaAd, type SambaGroup, type SambaOptions, type SambaUser } from './samba.js';

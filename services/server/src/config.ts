/** The single node's settings. Names are public interface: operators' scripts use them. */
import { resolve } from 'node:path';
import { boolean, integer, list, listenAddress, loadConfig, z, type LoadOptions } from '@postern/config';
import { trustedNetworks } from '@postern/gateway';
import { LOG_LEVELS } from '@postern/telemetry';

export const serverSchema = z.object({
  POP3_LISTEN: listenAddress.prefault('127.0.0.1:1110'),
  POP3S_LISTEN: listenAddress.prefault('127.0.0.1:1995'),
  LMTP_LISTEN: listenAddress.prefault('127.0.0.1:2424'),
  ADMIN_LISTEN: listenAddress.prefault('127.0.0.1:9110'),
  DATA_DIR: z.string().min(1).default('./var'),
  PASSWD_FILE: z.string().min(1).optional(),
  MAILDIR: z
    .string()
    .min(1)
    .refine((t) => t.includes('%u') || t.includes('%n'), 'must contain %u or %n so each user gets their own Maildir')
    .optional(),
  TLS_CERT: z.string().min(1).optional(),
  TLS_KEY: z.string().min(1).optional(),
  PLAINTEXT_AUTH: z.enum(['loopback', 'always', 'never']).default('loopback'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  /** Name in the greeting and CAPA IMPLEMENTATION; empty hides it. */
  IMPLEMENTATION: z.string().default('Postern'),
  SASL_MECHANISMS: list.pipe(z.array(z.enum(['PLAIN', 'LOGIN']))).default(['PLAIN', 'LOGIN']),
  MAX_CONNECTIONS: integer(1).default(10_000),
  MAX_CONNECTIONS_PER_IP: integer(1).default(50),
  /** New POP3 connections from one address per minute; 0: no limit. */
  MAX_CONNECTIONS_PER_IP_PER_MINUTE: integer(0).default(0),
  LOGIN_TIMEOUT_MS: integer(1_000).default(60_000),
  IDLE_TIMEOUT_MS: integer(600_000).default(600_000),
  AUTH_FAILURE_DELAY_MS: integer(0, 60_000).default(1_000),
  MAX_AUTH_FAILURES: integer(1, 100).default(3),
  MAX_BAD_COMMANDS: integer(1, 1_000).default(10),
  LOGIN_DELAY: integer(0).optional(),
  EXPIRE: z.union([z.literal('NEVER'), integer(0)]).optional(),
  MAX_MESSAGE_SIZE: integer(1_024).default(50 * 1024 * 1024),
  CREDENTIAL_CACHE_TTL_S: integer(0, 86_400).default(60),
  MAILDIR_FSYNC: boolean.default(true),
  MAILDIR_READ_MODE: z.enum(['sync', 'async']).default('sync'),
  MAILDIR_SAVE_CRLF: boolean.default(true),
  DRAIN_TIMEOUT_MS: integer(0).default(30_000),
  /** Load balancers (addresses or CIDR networks) that send a HAProxy PROXY header; empty: off. */
  PROXY_TRUSTED_NETWORKS: list.default([]).superRefine((cidrs, ctx) => {
    try {
      trustedNetworks(cidrs);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  }),
  /** POP3 worker processes: a number, or `auto` (one per CPU, at most 4). 1 runs everything in one process. */
  WORKERS: z.union([z.literal('auto'), integer(1, 64)]).default('auto'),
});

export type ServerConfigInput = z.output<typeof serverSchema>;

export interface ServerConfig extends Omit<ServerConfigInput, 'PASSWD_FILE' | 'MAILDIR'> {
  readonly PASSWD_FILE: string;
  readonly MAILDIR: string;
}

/** Load, validate and fill the defaults that depend on DATA_DIR. */
export function loadServerConfig(options: LoadOptions = {}): Readonly<ServerConfig> {
  const c = loadConfig(serverSchema, options);
  const dataDir = resolve(c.DATA_DIR);
  return Object.freeze({
    ...c,
    DATA_DIR: dataDir,
    PASSWD_FILE: resolve(c.PASSWD_FILE ?? `${dataDir}/passwd`),
    MAILDIR: c.MAILDIR ?? `${dataDir}/mail/%u/Maildir`,
  });
}

/** SIGHUP: what a configuration reload changes in a running process, and what takes a restart. */
import type { Logger } from '@postern/telemetry';
import { gatewaySettings, type RunningServer } from './app.js';
import type { ServerConfig } from './config.js';

/**
 * Applied on SIGHUP: the log level at once, the POP3 limits, timeouts and policies to connections
 * accepted from then on (sessions already open keep theirs). The password file reloads by itself.
 */
export const LIVE_KEYS = [
  'LOG_LEVEL',
  'MAX_CONNECTIONS',
  'MAX_CONNECTIONS_PER_IP',
  'MAX_CONNECTIONS_PER_IP_PER_MINUTE',
  'LOGIN_TIMEOUT_MS',
  'IDLE_TIMEOUT_MS',
  'AUTH_FAILURE_DELAY_MS',
  'MAX_AUTH_FAILURES',
  'MAX_BAD_COMMANDS',
  'LOGIN_DELAY',
  'EXPIRE',
] as const satisfies readonly (keyof ServerConfig)[];

/** Keys whose new value differs from the running one but only takes effect after a restart. */
export function keysNeedingRestart(running: Readonly<ServerConfig>, next: Readonly<ServerConfig>): string[] {
  const live = new Set<string>(LIVE_KEYS);
  const a = running as unknown as Record<string, unknown>;
  const b = next as unknown as Record<string, unknown>;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => !live.has(k) && JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

/**
 * Apply a validated configuration `next` to a process started with `running`. Logs
 * "configuration reloaded" with the live values, and "configuration change needs a restart"
 * naming the keys that changed but cannot change live (listen addresses, TLS files, store, ...).
 */
export function applyReload(logger: Logger, running: Readonly<ServerConfig>, next: Readonly<ServerConfig>, server: RunningServer | null): void {
  logger.level = next.LOG_LEVEL;
  server?.gateway?.reconfigure(gatewaySettings(next, null));
  const applied = Object.fromEntries(LIVE_KEYS.map((k) => [k, next[k] ?? null]));
  logger.info({ logLevel: next.LOG_LEVEL, applied }, 'configuration reloaded');
  const restart = keysNeedingRestart(running, next);
  if (restart.length > 0) logger.warn({ keys: restart }, 'configuration change needs a restart');
}

/** Logging for every service: JSON lines (pino), one child logger per session. */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface LoggerOptions {
  readonly service: string;
  readonly level: LevelWithSilent;
  /** Fields on every line (e.g. the worker id). */
  readonly bindings?: Record<string, unknown>;
  /** Write somewhere other than stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: options.service, ...options.bindings },
      // Credentials never reach a log line, even if a caller passes them by mistake.
      redact: { paths: ['password', '*.password', 'credentials', '*.credentials', 'sasl', '*.sasl'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
export { Metrics, METRICS_CONTENT_TYPE, exposeToClusterPrimary, clusterMetricsText, type MetricsOptions, type SessionState } from './metrics.js';

/** Logging for every service: JSON lines (pino), one child logger per session. */
import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { prettyDestination } from './pretty.js';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `json`: one JSON object per line; `pretty`: a line for people; `auto`: pretty only on a terminal. */
export const LOG_FORMATS = ['json', 'pretty', 'auto'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerOptions {
  readonly service: string;
  readonly level: LevelWithSilent;
  /** Fields on every line (e.g. the worker id). */
  readonly bindings?: Record<string, unknown>;
  /** Write somewhere other than stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
  /** Default `auto`: pretty when the destination (stdout by default) is a terminal, JSON otherwise. */
  readonly format?: LogFormat;
}

/** Whether `format` means pretty lines for this destination (`undefined`: stdout, fd 1). */
export function wantsPretty(format: LogFormat, destination: NodeJS.WritableStream | undefined): boolean {
  if (format !== 'auto') return format === 'pretty';
  return destination === undefined ? isatty(1) : (destination as { isTTY?: boolean }).isTTY === true;
}

export function createLogger(options: LoggerOptions): Logger {
  const out: DestinationStream = options.destination ?? pino.destination({ sync: false });
  const pretty = wantsPretty(options.format ?? 'auto', options.destination);
  return pino(
    {
      level: options.level,
      base: { service: options.service, ...options.bindings },
      // Credentials never reach a log line, even if a caller passes them by mistake.
      redact: { paths: ['password', '*.password', 'credentials', '*.credentials', 'sasl', '*.sasl'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pretty ? prettyDestination(out, { colors: !process.env.NO_COLOR && wantsPretty('auto', options.destination) }) : out,
  );
}
export { formatPrettyLine } from './pretty.js';
export { Metrics, METRICS_CONTENT_TYPE, exposeToClusterPrimary, clusterMetricsText, type MetricsOptions, type SessionState } from './metrics.js';

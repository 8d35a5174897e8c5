/**
 * Log lines for people at a terminal: `HH:MM:SS.mmm LEVEL msg key=value ...`, made from the JSON
 * line pino wrote (so redaction has already happened). Only used when a terminal asks for it:
 * parsing each line again costs CPU that JSON output to a collector does not pay.
 */
import type { DestinationStream } from 'pino';

const LEVEL_COLORS: Readonly<Record<string, string>> = {
  fatal: '\x1b[35m',
  error: '\x1b[31m',
  warn: '\x1b[33m',
  info: '\x1b[32m',
  debug: '\x1b[36m',
  trace: '\x1b[90m',
};
const RESET = '\x1b[0m';
/** Fields shown in the line's head, or the same on every line: not repeated as key=value. */
const HEAD = new Set(['time', 'level', 'msg', 'service', 'pid', 'hostname']);

function value(v: unknown): string {
  if (typeof v === 'string') return v !== '' && /^[^\s="\\]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** One pretty line (with its newline) from one JSON log line; a line that is not JSON passes unchanged. */
export function formatPrettyLine(json: string, colors = false): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof record.time === 'string' ? record.time.slice(11, 23) : new Date().toISOString().slice(11, 23);
  const level = String(record.level ?? '');
  const name = level.toUpperCase();
  const pad = ' '.repeat(Math.max(0, 5 - name.length));
  let line = `${time} ${colors && LEVEL_COLORS[level] ? `${LEVEL_COLORS[level]}${name}${RESET}` : name}${pad}`;
  if (record.msg !== undefined) line += ` ${String(record.msg)}`;
  for (const [key, v] of Object.entries(record)) {
    if (HEAD.has(key) || v === undefined) continue;
    line += ` ${key}=${value(v)}`;
  }
  return `${line}\n`;
}

/** Wraps a pino destination so that each JSON line is written as a pretty line. */
export function prettyDestination(out: DestinationStream, options: { colors: boolean }): DestinationStream & { flush?: () => void } {
  const target = out as DestinationStream & { flush?: (cb?: () => void) => void; flushSync?: () => void };
  return {
    write(chunk: string): void {
      let text = '';
      for (const line of chunk.split('\n')) if (line !== '') text += formatPrettyLine(line, options.colors);
      target.write(text);
    },
    flush(): void {
      target.flush?.();
    },
  };
}

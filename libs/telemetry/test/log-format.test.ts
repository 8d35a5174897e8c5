/** LOG_FORMAT: JSON by default and in pipes; pretty lines only when a terminal asks for them. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { createLogger, formatPrettyLine, type LogFormat } from '../src/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A destination that collects lines and says whether it is a terminal, as a tty.WriteStream does. */
function sink(isTTY: boolean): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(line);
      cb();
    },
  });
  Object.assign(stream, { isTTY });
  return { stream, lines };
}

function logOnce(format: LogFormat | undefined, isTTY: boolean): string {
  const { stream, lines } = sink(isTTY);
  const logger = createLogger({ service: 't', level: 'info', destination: stream, ...(format ? { format } : {}) });
  logger.info({ user: 'alice', password: 'hunter2', n: 3, note: 'two words' }, 'login');
  assert.equal(lines.length, 1);
  return lines[0] as string;
}

const isJson = (line: string): boolean => {
  try {
    return typeof JSON.parse(line) === 'object';
  } catch {
    return false;
  }
};

describe('log format', () => {
  test('auto (the default): JSON to a pipe or file, pretty to a terminal', () => {
    assert.ok(isJson(logOnce(undefined, false)));
    assert.ok(isJson(logOnce('auto', false)));
    const pretty = logOnce('auto', true);
    assert.ok(!isJson(pretty), pretty);
    assert.match(pretty, /^\d\d:\d\d:\d\d\.\d\d\d .*INFO.* login user=alice password=\[redacted\] n=3 note="two words"$/);
    assert.ok(!pretty.includes('hunter2'));
  });

  test('json and pretty are what they say, terminal or not', () => {
    assert.ok(isJson(logOnce('json', true)));
    const forced = logOnce('pretty', false);
    assert.match(forced, /^\d\d:\d\d:\d\d\.\d\d\d INFO  login user=alice/);
    assert.ok(!forced.includes('\x1b['), 'no colours when the destination is not a terminal');
  });

  test('the pretty line: time, level, message, then the other fields', () => {
    const line = formatPrettyLine(
      JSON.stringify({ level: 'warn', time: '2026-11-27T05:01:02.345Z', service: 's', msg: 'limit', ip: '127.0.0.1', limit: { n: 1 }, empty: '' }),
    );
    assert.equal(line, '05:01:02.345 WARN  limit ip=127.0.0.1 limit={"n":1} empty=""\n');
    assert.equal(formatPrettyLine('not json'), 'not json\n');
  });

  // A real pseudo-terminal from util-linux `script`, against the same program in a pipe.
  const program = [
    "import { createLogger } from '@postern/telemetry';",
    "const logger = createLogger({ service: 'pty', level: 'info' });",
    "logger.info({ answer: 42 }, 'hello');",
    'logger.flush();',
  ].join(' ');
  const node = [process.execPath, '--conditions=development', '--import', 'tsx', '--input-type=module', '-e', program];

  test('on a pseudo-terminal (script -qec) the default is pretty', () => {
    const quoted = node.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    const result = spawnSync('script', ['-qec', quoted, '/dev/null'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    const line = result.stdout.split(/\r?\n/).find((l) => l.includes('hello'));
    assert.ok(line !== undefined, result.stdout);
    assert.match(line, /^\d\d:\d\d:\d\d\.\d\d\d .*INFO.* hello answer=42/);
  });

  test('in a pipe the default is JSON', () => {
    const result = spawnSync(node[0] as string, node.slice(1), { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    const record = JSON.parse(result.stdout.trim()) as Record<string, unknown>;
    assert.equal(record.msg, 'hello');
    assert.equal(record.answer, 42);
  });
});

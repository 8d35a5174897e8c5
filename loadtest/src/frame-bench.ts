// Micro-benchmark of the RETR encoding on real message files: the gateway's one-pass framer
// (canonical line ends, dot-stuffing, status line and terminator in one WebAssembly pass) against
// the general path it replaced for Maildir (the store's canonical encoder, then DotStuffer).
// Both start from the file's bytes in memory, so only the encoding is timed.
//
// Usage: npm run bench:frame -w loadtest -- --dir <Maildir/new or cur of a mailgen tree> [--passes N]

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CanonicalEncoder } from '@postern/mailstore';
import { DotStuffer, RETR_FRAME_INPUT, retrFramer } from '@postern/pop3-protocol';
import { UsageError, intOption, isMain, runCli } from './cli-util.js';

export interface FrameBenchResult {
  files: number;
  octets: number;
  framerMBps: number;
  generalMBps: number;
}

/** The reply body of one file through the framer, in chunks as the gateway sends it; `keep` collects the bytes. */
function framed(file: Buffer, keep: Buffer[] | null): number {
  const framer = retrFramer();
  let octets = 0;
  let previous = 0x0a;
  for (let at = 0; at === 0 || at < file.length; at += RETR_FRAME_INPUT) {
    const chunk = file.subarray(at, at + RETR_FRAME_INPUT);
    framer.input.set(chunk);
    const out = framer.frame('', chunk.length, previous, at + RETR_FRAME_INPUT >= file.length);
    keep?.push(Buffer.from(out.buffer));
    octets += out.octets;
    out.release();
    if (chunk.length > 0) previous = chunk[chunk.length - 1] as number;
  }
  return octets;
}

/** The same through the general path: the store's canonical encoder, then DotStuffer. */
function general(file: Buffer, keep: Buffer[] | null): number {
  const encoder = new CanonicalEncoder();
  const stuffer = new DotStuffer();
  const parts = [stuffer.push(encoder.push(file)), stuffer.push(encoder.end()), stuffer.finish()];
  keep?.push(...parts);
  return encoder.size;
}

/**
 * Encodes every file `passes` times both ways, after checking that both give the same bytes
 * (throws if not); files over one framer chunk go in chunks.
 */
export function frameBench(files: readonly Buffer[], passes: number): FrameBenchResult {
  for (const file of files) {
    const a: Buffer[] = [];
    const b: Buffer[] = [];
    if (framed(file, a) !== general(file, b) || !Buffer.concat(a).equals(Buffer.concat(b))) {
      throw new Error('the framer and the general path disagree on a file');
    }
  }
  let sink = 0;
  const viaFramer = (): void => {
    for (const file of files) sink += framed(file, null);
  };
  const viaGeneral = (): void => {
    for (const file of files) sink += general(file, null);
  };
  const octets = files.reduce((n, f) => n + f.length, 0);
  const time = (fn: () => void): number => {
    fn(); // warm-up
    const t0 = process.hrtime.bigint();
    for (let p = 0; p < passes; p++) fn();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const framerSeconds = time(viaFramer);
  const generalSeconds = time(viaGeneral);
  if (sink < 0) throw new Error('unreachable');
  return {
    files: files.length,
    octets,
    framerMBps: (octets * passes) / 1e6 / framerSeconds,
    generalMBps: (octets * passes) / 1e6 / generalSeconds,
  };
}

const USAGE = `Usage: npm run bench:frame -w loadtest -- --dir DIR [--passes N]
  --dir DIR     a directory of message files (e.g. a mailgen tree's <user>/Maildir/new)
  --passes N    times over all files (default 50)
`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, passes: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.dir === undefined) throw new UsageError('--dir is required');
  const dir = values.dir;
  const files = readdirSync(dir).map((name) => readFileSync(join(dir, name)));
  const r = frameBench(files, intOption('--passes', values.passes, 50, 1));
  process.stdout.write(
    `${r.files} files, ${(r.octets / 1e6).toFixed(1)} MB\n` +
      `one-pass framer            ${r.framerMBps.toFixed(0)} MB/s\n` +
      `canonical encoder + stuffer ${r.generalMBps.toFixed(0)} MB/s\n` +
      `framer / general           ${(r.framerMBps / r.generalMBps).toFixed(2)}\n`,
  );
}

if (isMain(import.meta.url)) runCli(main, USAGE);

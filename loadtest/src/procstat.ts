// Memory and CPU of a server's process tree, from /proc (Linux only).
//
// A multi-process server (Dovecot forks a process per POP3 session) is measured as the sum over
// the process and all its descendants. RSS counts shared pages once per process, so the sum
// overstates what such a server really uses; PSS (from smaps_rollup) divides shared pages among
// the processes that map them and is the fairer figure for comparing servers.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

interface StatLine {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

function readStat(pid: number): StatLine | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The command name is in parentheses and may contain anything; fields follow the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field k is rest[k - 3].
  const ppid = Number(rest[1]);
  const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  return { pid, ppid, ticks };
}

function allStats(): StatLine[] {
  const out: StatLine[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s !== null) out.push(s);
  }
  return out;
}

function treeOf(rootPid: number, stats: StatLine[]): StatLine[] {
  const children = new Map<number, StatLine[]>();
  let root: StatLine | undefined;
  for (const s of stats) {
    if (s.pid === rootPid) root = s;
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [s]);
    else list.push(s);
  }
  if (root === undefined) return [];
  const out: StatLine[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const s = stack.pop() as StatLine;
    out.push(s);
    for (const c of children.get(s.pid) ?? []) stack.push(c);
  }
  return out;
}

/** PIDs of the process and all its descendants (empty if it is gone). */
export function processTree(rootPid: number): number[] {
  return treeOf(rootPid, allStats()).map((s) => s.pid);
}

export interface TreeMemory {
  processes: number;
  /** Sum of VmRSS over the tree, bytes. */
  rssBytes: number;
  /** Sum of Pss over the tree, bytes; null where smaps_rollup cannot be read. */
  pssBytes: number | null;
}

function kbField(text: string, field: string): number | null {
  const i = text.indexOf(`${field}:`);
  if (i === -1) return null;
  const m = /^\s*([0-9]+) kB/.exec(text.slice(i + field.length + 1, i + field.length + 40));
  return m === null ? null : Number(m[1]) * 1024;
}

export function treeMemory(rootPid: number): TreeMemory {
  const pids = processTree(rootPid);
  let rss = 0;
  let pss: number | null = 0;
  let processes = 0;
  for (const pid of pids) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    processes++;
    rss += kbField(status, 'VmRSS') ?? 0;
    if (pss !== null) {
      try {
        const p = kbField(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'), 'Pss');
        pss = p === null ? null : pss + p;
      } catch {
        pss = null;
      }
    }
  }
  return { processes, rssBytes: rss, pssBytes: pss };
}

let clockTicks: number | null = null;
function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * CPU seconds used by the tree so far: user + system time of each live process plus what its
 * reaped children used (cutime/cstime), so processes that came and went between two samples count.
 */
export function treeCpuSeconds(rootPid: number): number {
  const tree = treeOf(rootPid, allStats());
  return tree.reduce((a, s) => a + s.ticks, 0) / ticksPerSecond();
}

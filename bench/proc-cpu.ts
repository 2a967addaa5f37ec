import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of the utime/stime fields in /proc; 100 on Linux unless the kernel says otherwise. */
export const clockTicksPerSecond: number = readClockTicks();

function readClockTicks(): number {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

interface ProcStat {
  pid: number;
  ppid: number;
  userTicks: number;
  systemTicks: number;
  minorFaults: number;
}

/** Reads utime + stime (all threads of the process, in clock ticks) and the parent pid, or null when the process is gone. */
function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The command name sits in parentheses and may hold spaces: the fields after the last ")" are fixed.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state(0) ppid(1) ... minflt(7) ... utime(11) stime(12).
  return { pid, ppid: Number(fields[1]), userTicks: Number(fields[11]), systemTicks: Number(fields[12]), minorFaults: Number(fields[7]) };
}

/** Lists the pid and every live descendant of it (for nginx: the master and its worker; for weir: its one process). */
export function processTree(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat === null) continue;
    const list = children.get(stat.ppid);
    if (list === undefined) children.set(stat.ppid, [pid]);
    else list.push(pid);
  }
  const tree: number[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** CPU time in microseconds, split into user and kernel (system) time, with the counts that explain kernel time. */
export interface CpuTimes {
  user: number;
  system: number;
  /** Minor page faults (a growing or freshly mapped heap shows here). */
  minorFaults: number;
  /** Voluntary and involuntary context switches of all threads. */
  contextSwitches: number;
}

function contextSwitches(pid: number): number {
  let total = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'latin1');
      for (const match of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) total += Number(match[1]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return total;
}

/** Sums user and system CPU of the given processes, all their threads included, in microseconds. */
export function cpuMicroseconds(pids: readonly number[]): CpuTimes {
  let user = 0;
  let system = 0;
  let minorFaults = 0;
  let switches = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat === null) throw new Error(`Cannot read CPU time of process "${pid}": it has exited`);
    user += stat.userTicks;
    system += stat.systemTicks;
    minorFaults += stat.minorFaults;
    switches += contextSwitches(pid);
  }
  return { user: (user * 1e6) / clockTicksPerSecond, system: (system * 1e6) / clockTicksPerSecond, minorFaults, contextSwitches: switches };
}

/** Reads the resident set size of one process in bytes, or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

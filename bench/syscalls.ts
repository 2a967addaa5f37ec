import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWrk } from './wrk.ts';

/** System calls a proxy made per request during a short wrk run under `strace -c`. */
export interface SyscallCounts {
  requests: number;
  /** All system calls per request. */
  perRequest: number;
  /** The most frequent calls, per request, most frequent first. */
  top: { name: string; perRequest: number }[];
}

/** Says why syscalls cannot be counted here (no strace), or null when they can. */
export function straceUnavailableReason(): string | null {
  return spawnSync('strace', ['-V']).error === undefined ? null : 'strace is not installed (apt-get install -y strace)';
}

/** Parses the table that `strace -c` writes into calls by syscall name. */
export function parseStraceSummary(text: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const line of text.split('\n')) {
    // % time, seconds, usecs/call, calls, errors (may be blank), syscall
    const match = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (match !== null && match[2] !== 'total') calls.set(match[2], Number(match[1]));
  }
  return calls;
}

/** Attaches `strace -f -c` to the pids, drives `seconds` of wrk load, detaches, and divides the counts by the requests served. */
export async function countSyscalls(pids: readonly number[], options: { url: string; seconds: number; connections: number }): Promise<SyscallCounts> {
  const out = join(mkdtempSync(join(tmpdir(), 'weir-bench-strace-')), 'summary.txt');
  const strace = spawn('strace', ['-f', '-c', '-q', '-o', out, ...pids.flatMap((pid) => ['-p', String(pid)])], { stdio: 'ignore' });
  const done = new Promise<void>((resolve) => strace.on('close', () => resolve()));
  // strace gives no signal once it has attached; half a second is ample on an idle process.
  await new Promise((resolve) => setTimeout(resolve, 500));
  try {
    const wrk = await runWrk({ url: options.url, seconds: options.seconds, connections: options.connections });
    strace.kill('SIGINT');
    await done;
    const calls = parseStraceSummary(readFileSync(out, 'utf8'));
    const total = [...calls.values()].reduce((sum, n) => sum + n, 0);
    const requests = Math.max(1, wrk.requests);
    return {
      requests: wrk.requests,
      perRequest: total / requests,
      top: [...calls].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([name, n]) => ({ name, perRequest: n / requests })),
    };
  } finally {
    strace.kill('SIGINT');
    await done;
  }
}

/** Renders one proxy's counts as "4.1 per request (write 2.0, read 2.0, ...)". */
export function formatSyscalls(counts: SyscallCounts): string {
  return `${counts.perRequest.toFixed(1)} per request (${counts.top.map((t) => `${t.name} ${t.perRequest.toFixed(2)}`).join(', ')})`;
}

/**
 * User-space instructions per request of weir, counted by valgrind's callgrind: the same figure run after run,
 * whatever else the machine is doing, where CPU time on this shared host moves by ±5 µs between rounds. For the
 * before/after of changes worth a few hundred nanoseconds, which compare.ts cannot resolve here. Kernel time (the
 * system calls) is not counted; it is the same for two builds that make the same calls.
 *
 * Run: npx node bench/instructions.ts [--requests 20000] [--warmup 20000] [--connections 1] VARIANT...
 * VARIANT: label=scenario[@path/to/bin/weir.js], as in compare.ts. Each variant runs alone under callgrind: warm-up
 * requests, counters zeroed, the measured requests, counters dumped. Needs valgrind (Debian's package).
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNginxPeer } from './nginx-peer.ts';
import { startWeir } from './weir-proxy.ts';
import { parseVariant, variantChain } from './compare.ts';

/**
 * Sends `total` GETs over `connections` keep-alive connections, one at a time on each, as wrk does; resolves when all
 * were answered 200. Rejects on a connection error or any other status.
 */
export function drive(port: number, path: string, total: number, connections: number): Promise<void> {
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 'latin1');
  let sent = 0;
  let answered = 0;
  return new Promise((resolve, reject) => {
    const sockets: net.Socket[] = [];
    const finish = (error: Error | null): void => {
      for (const s of sockets) s.destroy();
      if (error === null) resolve();
      else reject(error);
    };
    for (let c = 0; c < Math.min(connections, total); c++) {
      const socket = net.connect(port, '127.0.0.1');
      sockets.push(socket);
      let pending: Buffer = Buffer.alloc(0);
      const next = (): void => {
        if (sent >= total) return;
        sent++;
        socket.write(request);
      };
      socket.on('connect', next);
      socket.on('error', finish);
      socket.on('data', (data: Buffer) => {
        pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
        for (;;) {
          const end = pending.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = pending.subarray(0, end).toString('latin1');
          const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
          if (status !== '200') return finish(new Error(`status ${status ?? '?'} for GET ${path}: ${head.split('\r\n')[0]}`));
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
          if (!Number.isFinite(length)) return finish(new Error(`a response without Content-Length for GET ${path}`));
          if (pending.length < end + 4 + length) return;
          pending = pending.subarray(end + 4 + length);
          if (++answered === total) return finish(null);
          next();
        }
      });
    }
  });
}

/** Instructions (Ir) in the dump files `pid` wrote to `dir` that are not in `before`: all threads, and the busiest one. */
function dumpedInstructions(dir: string, pid: number, before: Set<string>): { all: number; busiest: number } {
  let all = 0;
  let busiest = 0;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`cg.${pid}`) || before.has(name)) continue;
    const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, name), 'utf8'));
    if (totals === null) continue;
    all += Number(totals[1]);
    busiest = Math.max(busiest, Number(totals[1]));
  }
  return { all, busiest };
}

async function main(argv: string[]): Promise<void> {
  let requests = 20000;
  let warmup = 20000;
  let connections = 1;
  const variants = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--requests') requests = Number(argv[++i]);
    else if (a === '--warmup') warmup = Number(argv[++i]);
    else if (a === '--connections') connections = Number(argv[++i]);
    else variants.push(parseVariant(a));
  }
  if (variants.length === 0) throw new Error('usage: npx node bench/instructions.ts [--requests N] [--warmup N] [--connections C] label=scenario[@bin]...');
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)');
  // PORT_BASE lets two runs go side by side (each needs its nginx peer and ports).
  const portBase = Number(process.env.PORT_BASE ?? 18080);
  const peer = await startNginxPeer(portBase);
  const results: { label: string; all: number; busiest: number }[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      const { path, filters } = await variantChain(v);
      const dir = mkdtempSync(join(tmpdir(), 'weir-callgrind-'));
      const listenPort = portBase + 200 + 2 * i;
      const proc = await startWeir({
        name: `instructions-${v.label}`, listenPort, adminPort: listenPort + 1, upstreamPort: portBase + 920,
        filters, workers: 1, profileDir: null, bin: v.bin, nodeArgs: v.nodeArgs, startTimeoutMs: 300000,
        // One dump per thread: the worker thread that serves the requests apart from V8's compiler and GC helpers.
        wrapper: ['valgrind', '--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'cg.%p')}`],
      });
      try {
        await drive(listenPort, path, warmup, connections);
        // valgrind runs node's threads one at a time; callgrind_control reaches them through its command file.
        if (spawnSync('callgrind_control', ['-z', String(proc.pid)]).status !== 0) throw new Error('callgrind_control -z failed');
        const before = new Set(readdirSync(dir));
        await drive(listenPort, path, requests, connections);
        if (spawnSync('callgrind_control', ['-d', String(proc.pid)]).status !== 0) throw new Error('callgrind_control -d failed');
        let counted = { all: 0, busiest: 0 };
        for (let tries = 0; tries < 100 && counted.all === 0; tries++) {
          await sleep(100);
          counted = dumpedInstructions(dir, proc.pid, before);
        }
        if (counted.all === 0) throw new Error(`${v.label}: callgrind wrote no dump in ${dir}`);
        const result = { label: v.label, all: counted.all / requests, busiest: counted.busiest / requests };
        results.push(result);
        process.stderr.write(`${v.label}: ${result.all.toFixed(0)} instructions per request, ${result.busiest.toFixed(0)} on the busiest thread (${dir})\n`);
      } finally {
        await proc.stop();
      }
    }
  } finally {
    await peer.stop();
  }
  const [first] = results;
  const versus = (now: number, then: number): string => (now === then ? '' : `${now > then ? '+' : ''}${(100 * (now / then - 1)).toFixed(1)} %`);
  console.log(`# instructions, ${new Date().toISOString()}; callgrind, ${warmup} warm-up then ${requests} measured requests over ${connections} connection(s)`);
  console.log('| variant | instructions per request, all threads | vs first | on the busiest thread (the worker) | vs first |');
  console.log('|---|--:|--:|--:|--:|');
  for (const r of results) console.log(`| ${r.label} | ${Math.round(r.all)} | ${versus(r.all, first.all)} | ${Math.round(r.busiest)} | ${versus(r.busiest, first.busiest)} |`);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`instructions: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}

/**
 * User-space instructions per request of weir, counted by valgrind's callgrind: the same figure run after run,
 * whatever else the machine is doing, where CPU time on this shared host moves by ±5 µs between rounds. For the
 * before/after of changes worth a few hundred nanoseconds, which compare.ts cannot resolve here. Kernel time (the
 * system calls) is not counted; it is the same for two builds that make the same calls.
 *
 * Run: npx node bench/instructions.ts [--requests 20000] [--warmup 20000] [--connections 1] VARIANT...
 * VARIANT: label=scenario[@path/to/bin/weir.js], as in compare.ts. Each variant runs alone under callgrind: warm-up
 * requests, counters zeroed, the measured requests, counters dumped. Needs valgrind (Debian's package).
 *
 * The figure is of the code V8 runs once it has settled, as under wrk's steady load: the measured requests go over
 * the warm-up's connections, and optimised code is compiled synchronously (`--no-concurrent-recompilation`). Until
 * the fifteenth session neither held, and what V8 had finished compiling when the window opened moved the figure
 * by ±3 % between runs of one build (see BENCHMARKS.md).
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
 * Keep-alive connections that send GETs one at a time on each, as wrk does. The same connections serve the warm-up
 * and the measured requests: a connection opened between the two would run connection set-up in the measured
 * window, and V8 throws away code that had inlined the old connection's callbacks ("wrong call target") and
 * compiles it again there.
 */
export class Driver {
  readonly #request: Buffer;
  readonly #path: string;
  readonly #sockets: net.Socket[] = [];
  #sent = 0;
  #answered = 0;
  #total = 0;
  #settle: ((error: Error | null) => void) | null = null;
  #failed: Error | null = null;
  #closed = false;

  private constructor(port: number, path: string) {
    this.#request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, 'latin1');
    this.#path = path;
  }

  /** Opens `connections` connections to `port`; resolves once all are connected. */
  static async open(port: number, path: string, connections: number): Promise<Driver> {
    const d = new Driver(port, path);
    await Promise.all(Array.from({ length: connections }, () => d.#connect(port)));
    return d;
  }

  /** Sends `total` requests over the connections; resolves when all were answered 200, rejects on anything else. */
  run(total: number): Promise<void> {
    if (this.#failed !== null) return Promise.reject(this.#failed);
    this.#sent = 0;
    this.#answered = 0;
    this.#total = total;
    return new Promise((resolve, reject) => {
      this.#settle = (error) => {
        this.#settle = null;
        if (error === null) resolve();
        else reject(error);
      };
      for (const s of this.#sockets) this.#next(s);
    });
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#sockets) s.destroy();
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#failed = error;
    this.close();
    this.#settle?.(error);
  }

  #next(socket: net.Socket): void {
    if (this.#sent >= this.#total) return;
    this.#sent++;
    socket.write(this.#request);
  }

  #connect(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      this.#sockets.push(socket);
      let pending: Buffer = Buffer.alloc(0);
      socket.once('connect', () => resolve());
      socket.on('error', (error) => {
        reject(error);
        this.#fail(error);
      });
      socket.on('close', () => this.#fail(new Error(`the proxy closed a connection after ${this.#answered} answers`)));
      socket.on('data', (data: Buffer) => {
        pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
        for (;;) {
          const end = pending.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = pending.subarray(0, end).toString('latin1');
          const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
          if (status !== '200') return this.#fail(new Error(`status ${status ?? '?'} for GET ${this.#path}: ${head.split('\r\n')[0]}`));
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
          if (!Number.isFinite(length)) return this.#fail(new Error(`a response without Content-Length for GET ${this.#path}`));
          if (pending.length < end + 4 + length) return;
          pending = pending.subarray(end + 4 + length);
          if (++this.#answered === this.#total) return this.#settle?.(null);
          this.#next(socket);
        }
      });
    });
  }
}

/**
 * Instructions (Ir) in the dump files `pid` wrote to `dir` that are not in `before`: all threads, the busiest one, and
 * the busiest one's dump file.
 */
function dumpedInstructions(dir: string, pid: number, before: Set<string>): { all: number; busiest: number; file: string } {
  let all = 0;
  let busiest = 0;
  let file = '';
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`cg.${pid}`) || before.has(name)) continue;
    const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, name), 'utf8'));
    if (totals === null) continue;
    all += Number(totals[1]);
    if (Number(totals[1]) > busiest) {
      busiest = Number(totals[1]);
      file = join(dir, name);
    }
  }
  return { all, busiest, file };
}

/**
 * V8's runtime entries that compile (lazily, baseline, Maglev, Turbofan, on-stack replacement): none calls another,
 * so their inclusive counts add up without counting anything twice.
 */
const COMPILING = /^\s*([\d,]+) .*\bv8::internal::Runtime_(?:Compile\w*|Optimize\w*|InstallBaselineCode|TierUp\w*)\(/;

/**
 * The instructions of a dump spent compiling JavaScript. One Turbofan compile of a hot function costs about
 * 30 million instructions, 10 000 a request over 3 000 requests: whether one falls in the window or just before it
 * would otherwise decide the figure.
 */
function compilingInstructions(file: string): number {
  const out = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (out.status !== 0) throw new Error(`callgrind_annotate failed on ${file}: ${out.stderr}`);
  let total = 0;
  for (const line of out.stdout.split('\n')) {
    const m = COMPILING.exec(line);
    if (m !== null) total += Number(m[1].replaceAll(',', ''));
  }
  return total;
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
  const results: { label: string; all: number; busiest: number; run: number }[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      const { path, filters } = await variantChain(v);
      const dir = mkdtempSync(join(tmpdir(), 'weir-callgrind-'));
      const listenPort = portBase + 200 + 2 * i;
      const proc = await startWeir({
        name: `instructions-${v.label}`, listenPort, adminPort: listenPort + 1, upstreamPort: portBase + 920,
        filters, workers: 1, profileDir: null, bin: v.bin, startTimeoutMs: 300000,
        // Optimised code compiled on the thread that runs it, as the warm-up asks for it, not on a helper thread that
        // valgrind, which runs one thread at a time, lets finish late, inside the measured window.
        nodeArgs: ['--no-concurrent-recompilation', ...v.nodeArgs],
        // One dump per thread: the worker thread that serves the requests apart from V8's compiler and GC helpers.
        wrapper: ['valgrind', '--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'cg.%p')}`],
      });
      try {
        const driver = await Driver.open(listenPort, path, connections);
        await driver.run(warmup);
        // valgrind runs node's threads one at a time; callgrind_control reaches them through its command file.
        if (spawnSync('callgrind_control', ['-z', String(proc.pid)]).status !== 0) throw new Error('callgrind_control -z failed');
        const before = new Set(readdirSync(dir));
        await driver.run(requests);
        driver.close();
        if (spawnSync('callgrind_control', ['-d', String(proc.pid)]).status !== 0) throw new Error('callgrind_control -d failed');
        let counted = { all: 0, busiest: 0, file: '' };
        for (let tries = 0; tries < 100 && counted.all === 0; tries++) {
          await sleep(100);
          counted = dumpedInstructions(dir, proc.pid, before);
        }
        if (counted.all === 0) throw new Error(`${v.label}: callgrind wrote no dump in ${dir}`);
        const compiling = compilingInstructions(counted.file);
        const result = { label: v.label, all: counted.all / requests, busiest: counted.busiest / requests, run: (counted.busiest - compiling) / requests };
        results.push(result);
        process.stderr.write(`${v.label}: ${result.all.toFixed(0)} instructions per request, ${result.busiest.toFixed(0)} on the busiest thread, ${result.run.toFixed(0)} of them not compiling (${dir})\n`);
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
  console.log('| variant | instructions per request, all threads | on the busiest thread (the worker) | the worker, compiling left out | vs first |');
  console.log('|---|--:|--:|--:|--:|');
  for (const r of results) console.log(`| ${r.label} | ${Math.round(r.all)} | ${Math.round(r.busiest)} | ${Math.round(r.run)} | ${versus(r.run, first.run)} |`);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`instructions: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}

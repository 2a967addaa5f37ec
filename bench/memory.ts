import { connect, type Socket } from 'node:net';
import { processTree, rssBytes } from './proc-cpu.ts';
import { runWrk } from './wrk.ts';

const MiB = 1024 * 1024;

/** Sums the resident memory of a process and its descendants, in bytes. */
export function treeRss(rootPid: number): number {
  return processTree(rootPid).reduce((sum, pid) => sum + (rssBytes(pid) ?? 0), 0);
}

/** What holding many idle keep-alive connections cost a proxy. */
export interface IdleResult {
  connections: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** rssAfter − rssBefore. */
  costMiB: number;
}

function oneExchange(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let seen = '';
    const fail = (error: Error): void => { socket.destroy(); reject(error); };
    socket.setTimeout(10000, () => fail(new Error('an idle-connection request timed out')));
    socket.once('error', fail);
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nhost: bench\r\nuser-agent: weir-bench-idle\r\n\r\n'));
    socket.on('data', function readResponse(chunk: Buffer) {
      seen += chunk.toString('latin1');
      // The upstream's 12-byte body ends the response: the connection is then idle and kept open.
      if (seen.endsWith('hello world\n')) {
        socket.removeListener('data', readResponse);
        socket.removeListener('error', fail);
        socket.setTimeout(0);
        socket.on('error', () => {});
        resolve(socket);
      }
    });
  });
}

/** Opens `count` keep-alive connections to the proxy on `port`, one request each, leaves them idle and measures the RSS they added; closes them after. */
export async function measureIdleConnections(rootPid: number, port: number, count: number): Promise<IdleResult> {
  await oneExchange(port).then((socket) => socket.destroy());
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const before = treeRss(rootPid);
  const sockets: Socket[] = [];
  try {
    for (let opened = 0; opened < count; opened += 250) {
      const batch = Math.min(250, count - opened);
      sockets.push(...await Promise.all(Array.from({ length: batch }, () => oneExchange(port))));
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const after = treeRss(rootPid);
    return { connections: sockets.length, rssBeforeMiB: before / MiB, rssAfterMiB: after / MiB, costMiB: (after - before) / MiB };
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

/** RSS samples of a proxy over a long run at load. */
export interface SoakResult {
  seconds: number;
  requestsPerSecond: number;
  failures: number;
  /** The first sample after a fifth of the run, once the heap has grown to its working size. */
  baselineMiB: number;
  minMiB: number;
  maxMiB: number;
  lastMiB: number;
  /** The largest distance of a later sample from the baseline, as a fraction of it. */
  maxDeviation: number;
}

/** Drives wrk for `seconds` and samples the proxy's RSS every 5 s; compares later samples with the one taken a fifth of the way in. */
export async function measureSoak(rootPid: number, url: string, seconds: number, connections: number): Promise<SoakResult> {
  const samples: { at: number; rss: number }[] = [];
  const started = Date.now();
  const timer = setInterval(() => samples.push({ at: (Date.now() - started) / 1000, rss: treeRss(rootPid) }), 5000);
  try {
    const wrk = await runWrk({ url, seconds, connections });
    const later = samples.filter((s) => s.at >= seconds / 5);
    if (later.length === 0) throw new Error(`The soak run of ${seconds}s was too short to sample`);
    const baseline = later[0].rss;
    const values = later.map((s) => s.rss);
    return {
      seconds,
      requestsPerSecond: wrk.requestsPerSecond,
      failures: wrk.non2xx + wrk.socketErrors,
      baselineMiB: baseline / MiB,
      minMiB: Math.min(...values) / MiB,
      maxMiB: Math.max(...values) / MiB,
      lastMiB: values[values.length - 1] / MiB,
      maxDeviation: Math.max(...values.map((v) => Math.abs(v - baseline) / baseline)),
    };
  } finally {
    clearInterval(timer);
  }
}

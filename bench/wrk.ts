import { spawn } from 'node:child_process';

/** What one wrk run measured. */
export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  /** Latency percentiles in microseconds, from `wrk --latency`. */
  p50: number;
  p99: number;
  /** Responses with a status outside 2xx/3xx. */
  non2xx: number;
  /** Connect, read, write and timeout errors added up. */
  socketErrors: number;
}

/** Options of one wrk run: always one thread and keep-alive connections, bounded by `seconds`. */
export interface WrkOptions {
  url: string;
  seconds: number;
  connections: number;
  /** wrk threads; 1 unless a run needs more load than one thread makes. */
  threads?: number;
}

/** Runs wrk once and resolves with its parsed figures; rejects when wrk fails or prints nothing to parse. */
export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const seconds = Math.max(1, Math.round(options.seconds));
  const args = [
    `-t${options.threads ?? 1}`,
    `-c${options.connections}`,
    `-d${seconds}s`,
    '--timeout', '5s',
    '--latency',
    options.url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
    // wrk stops itself after -d; this only guards against a wrk that hangs on shutdown.
    const guard = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('error', (error) => { clearTimeout(guard); reject(new Error(`Cannot run wrk: ${error.message}`)); });
    child.on('close', (code) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`wrk against "${options.url}" exited with ${code}: ${output.trim()}`));
      try {
        resolve(parseWrkOutput(output));
      } catch (error) {
        reject(error);
      }
    });
  });
}

const unitMicroseconds: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6 };

function latencyMicroseconds(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (match === null) throw new Error(`Cannot parse wrk latency "${text}"`);
  return Number(match[1]) * unitMicroseconds[match[2]];
}

/** Parses the text that `wrk --latency` prints; throws when a figure the report needs is missing. */
export function parseWrkOutput(text: string): WrkResult {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(text);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /^\s+50%\s+(\S+)/m.exec(text);
  const p99 = /^\s+99%\s+(\S+)/m.exec(text);
  if (total === null || rate === null || p50 === null || p99 === null) {
    throw new Error(`Cannot parse wrk output: ${text.trim().slice(0, 400)}`);
  }
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requests: Number(total[1]),
    seconds: latencyMicroseconds(`${total[2]}${total[3]}`) / 1e6,
    requestsPerSecond: Number(rate[1]),
    p50: latencyMicroseconds(p50[1]),
    p99: latencyMicroseconds(p99[1]),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
    socketErrors: errors === null ? 0 : errors.slice(1).reduce((sum, n) => sum + Number(n), 0),
  };
}

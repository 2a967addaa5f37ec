/**
 * The access log: one JSON line per completed stream, written to stdout or a file in batches, or off.
 * It subscribes to the stream-complete channel, so the request path never calls it directly.
 */
import { Buffer } from 'node:buffer';
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { STREAM_COMPLETE, RejectedRequest } from './channels.ts';
import type { Stream } from '../dataplane/stream.ts';
import { monoNow, wallNow } from '../core/clock.ts';

/**
 * One access log line: pino's layout (`level`, `time` first, `msg` last) and the stable fields docs/configuration.md
 * lists. It is built by hand rather than through a pino logger, which costs about 7 µs a line (a quarter of
 * what proxying the request costs) where one JSON.stringify costs about 1 µs.
 */
export function accessLogLine(s: Stream): string {
  const h = s.requestHeaders;
  let filterMs = 0;
  if (s.filterMs !== null) for (const v of s.filterMs) filterMs += v;
  const path = h.get(':path');
  return JSON.stringify({
    level: 30,
    time: isoTime(),
    request_id: s.requestId,
    listener: s.listener.name,
    route: s.route?.name ?? null,
    method: s.head.method,
    path: s.originalPath,
    authority: s.originalAuthority,
    upstream_path: path === s.originalPath ? undefined : path,
    protocol: s.protocol,
    status: s.responseCode,
    flags: s.responseFlag,
    details: s.details || undefined,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
    duration_ms: round(monoNow() - s.startMono),
    upstream_ms: s.upstream !== null && s.upstream.upstreamMs >= 0 ? round(s.upstream.upstreamMs) : null,
    filter_ms: round(filterMs),
    cluster: s.clusterName,
    upstream: s.upstreamAddress,
    retries: s.upstream?.retries ?? 0,
    downstream: s.downstreamRemoteAddress,
    user_agent: h.get('user-agent'),
    msg: 'access',
  }) + '\n';
}

/** The line of a request the codec refused before it became a stream: the same fields, those it has. */
export function rejectedLine(r: RejectedRequest): string {
  return JSON.stringify({
    level: 30,
    time: isoTime(),
    request_id: null,
    listener: r.listener,
    route: null,
    method: r.method,
    path: r.path,
    authority: null,
    protocol: 'HTTP/1.1',
    status: r.status,
    flags: r.flags,
    details: r.details,
    downstream: r.downstream,
    msg: 'access',
  }) + '\n';
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

let isoMs = 0;
let isoText = '';

/** The current time in ISO 8601, formatted at most once a millisecond. */
function isoTime(): string {
  const now = wallNow();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/** What the running access log needs at shutdown. */
export interface AccessLog {
  /** Writes what is buffered (before the worker reports it drained). */
  flush(): void;
  /** Stops logging and flushes. */
  stop(): void;
}

/** Above this many buffered characters the lines are written at once. */
const FLUSH_AT = 64 * 1024;

/**
 * Lines gathered during one turn of the event loop, written with one blocking write() at its end: a busy worker makes
 * one system call per batch of requests instead of one per request, and a line waits at most one turn. As nginx's
 * access log, a write to a slow target (a pipe nobody reads) holds the worker until it is taken.
 */
class BatchWriter {
  readonly #fd: number;
  readonly #onError: (err: Error) => void;
  #lines: string[] = [];
  #size = 0;
  #scheduled = false;
  #failed = false;

  constructor(fd: number, onError: (err: Error) => void) {
    this.#fd = fd;
    this.#onError = onError;
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#size += line.length;
    if (this.#size >= FLUSH_AT) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushScheduled);
    }
  }

  readonly #flushScheduled = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  flush(): void {
    if (this.#lines.length === 0) return;
    const data = Buffer.from(this.#lines.join(''), 'utf8');
    this.#lines = [];
    this.#size = 0;
    if (this.#failed) return;
    let at = 0;
    while (at < data.length) {
      try {
        at += fs.writeSync(this.#fd, data, at);
      } catch (err) {
        // A non-blocking pipe that is full: wait a moment and write the rest.
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          Atomics.wait(PAUSE, 0, 0, 1);
          continue;
        }
        this.#failed = true;
        this.#onError(err as Error);
        return;
      }
    }
  }
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Starts writing the access log to `target` ("stdout", "off", or a file path, whose folders are created). A target
 * that cannot be opened or written is reported through `onError` once, and the access log stays off.
 */
export function startAccessLog(target: string, file: string | undefined, onError: (err: Error) => void): AccessLog {
  if (target === 'off') return { flush() {}, stop() {} };
  let fd = 1;
  if (file !== undefined) {
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      // Non-blocking: opening a named pipe that no process reads would otherwise block the worker, and its start or
      // reload, until one does. Writes that find a pipe full wait in `flush`.
      const { O_WRONLY, O_APPEND, O_CREAT, O_NONBLOCK } = fs.constants;
      fd = fs.openSync(file, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      onError(e.code === 'ENXIO' ? new Error(`it is a named pipe that no process reads (${e.code})`) : e);
      return { flush() {}, stop() {} };
    }
  }
  const writer = new BatchWriter(fd, onError);
  const onStream = (message: unknown) => writer.write(message instanceof RejectedRequest ? rejectedLine(message) : accessLogLine(message as Stream));
  diagnostics.subscribe(STREAM_COMPLETE, onStream);
  return {
    flush: () => writer.flush(),
    stop() {
      diagnostics.unsubscribe(STREAM_COMPLETE, onStream);
      writer.flush();
      if (fd !== 1) fs.closeSync(fd);
    },
  };
}

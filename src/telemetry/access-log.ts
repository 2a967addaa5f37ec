/**
 * The access log: one JSON line per completed stream, written by pino to stdout or a file, or off.
 * It subscribes to the stream-complete channel, so the request path never calls it directly.
 */
import diagnostics from 'node:diagnostics_channel';
import pino from 'pino';
import { STREAM_COMPLETE } from './channels.ts';
import type { Stream } from '../dataplane/stream.ts';

/** One access log entry; the field names are stable (docs/configuration.md lists them). */
export function accessLogEntry(s: Stream): Record<string, unknown> {
  const h = s.requestHeaders;
  let filterMs = 0;
  if (s.filterMs !== null) for (const v of s.filterMs) filterMs += v;
  return {
    request_id: s.requestId,
    listener: s.listener.name,
    route: s.route?.name ?? null,
    method: s.head.method,
    path: s.originalPath,
    authority: s.originalAuthority,
    upstream_path: h.get(':path') === s.originalPath ? undefined : h.get(':path'),
    protocol: s.protocol,
    status: s.responseCode,
    flags: s.responseFlag,
    details: s.details || undefined,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
    duration_ms: round(performance.now() - s.startMono),
    upstream_ms: s.upstream !== null && s.upstream.upstreamMs >= 0 ? round(s.upstream.upstreamMs) : null,
    filter_ms: round(filterMs),
    cluster: s.clusterName,
    upstream: s.upstreamAddress,
    retries: s.upstream?.retries ?? 0,
    downstream: s.downstreamRemoteAddress,
    user_agent: h.get('user-agent'),
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Starts writing the access log to `target` ("stdout", "off", or a file path). Returns a function that stops it.
 */
export function startAccessLog(target: string, file?: string): () => void {
  if (target === 'off') return () => {};
  const dest = pino.destination({ dest: file ?? 1, sync: file === undefined, mkdir: true });
  const logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, dest);
  const onStream = (message: unknown) => logger.info(accessLogEntry(message as Stream), 'access');
  diagnostics.subscribe(STREAM_COMPLETE, onStream);
  return () => {
    diagnostics.unsubscribe(STREAM_COMPLETE, onStream);
    dest.flushSync?.();
  };
}

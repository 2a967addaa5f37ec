/**
 * The names of weir's `node:diagnostics_channel` channels, in one place. Metrics, access logs and tracing
 * subscribe; the hot path publishes only when someone listens.
 */
import diagnostics from 'node:diagnostics_channel';

/** Published once per stream when it completes or is reset; the message is the Stream. */
export const STREAM_COMPLETE = 'weir:stream:complete';
/** Published after each config reload attempt: `{ ok, version, error? }`. */
export const CONFIG_RELOAD = 'weir:config:reload';
/** Published when a filter fails: `{ filter, message, requestId }`. */
export const FILTER_ERROR = 'weir:filter:error';

const streamComplete = diagnostics.channel(STREAM_COMPLETE);

/**
 * A request refused by the codec before it became a stream (a malformed head, bad body framing, a head too large
 * or too late): published on STREAM_COMPLETE like a Stream, so that the access log has a line for it too.
 */
export class RejectedRequest {
  readonly listener: string;
  /** The status sent, 0 when the connection was closed without one. */
  readonly status: number;
  readonly flags: string;
  readonly details: string;
  readonly downstream: string;
  /** The request line, when the head had been read. */
  readonly method: string | null;
  readonly path: string | null;

  constructor(listener: string, status: number, flags: string, details: string, downstream: string, method: string | null, path: string | null) {
    this.listener = listener;
    this.status = status;
    this.flags = flags;
    this.details = details;
    this.downstream = downstream;
    this.method = method;
    this.path = path;
  }
}

/** Publishes a completed stream (or a RejectedRequest) when the channel has subscribers. */
export function publishStreamComplete(stream: unknown): void {
  if (streamComplete.hasSubscribers) streamComplete.publish(stream);
}

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

/** Publishes a completed stream when the channel has subscribers. */
export function publishStreamComplete(stream: unknown): void {
  if (streamComplete.hasSubscribers) streamComplete.publish(stream);
}

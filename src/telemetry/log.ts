/**
 * weir's logs: one JSON line per event (pino), to stdout. Every line from a filter names the filter; every
 * line about a request carries its request id.
 */
import pino from 'pino';
import type { LogLevel } from '../filters/contract.ts';

const PINO_LEVEL: Record<LogLevel, pino.Level> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  error: 'error',
  critical: 'fatal',
};

/** The logger a worker and its filters use. */
export interface Logger {
  readonly pino: pino.Logger;
  /** A line from a filter (or its runtime), with the filter's name and, when given, the request id. */
  filter(level: LogLevel, filter: string, message: string, requestId?: string): void;
}

/** Creates the process or worker logger at `level`, writing synchronously to stdout. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const p = pino({ level, base: bindings, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
  return {
    pino: p,
    filter(lvl, filter, message, requestId) {
      p[PINO_LEVEL[lvl]]({ filter, request_id: requestId }, message);
    },
  };
}

/** The messages between the main thread and the worker threads. */
import type { RawConfig } from '../config/types.ts';
import type { MetricsSnapshot } from '../telemetry/metrics.ts';

/** From the main thread to a worker. */
export type ToWorker =
  | { type: 'prepare'; version: number; config: RawConfig; baseDir: string; prepared: Record<string, unknown> }
  | { type: 'commit'; version: number; ports: Record<string, number> }
  | { type: 'abort'; version: number }
  | { type: 'metrics'; id: number }
  | { type: 'clusters'; id: number }
  | { type: 'drain'; timeoutMs: number }
  | { type: 'soft-drain' };

/** From a worker to the main thread. */
export type FromWorker =
  | { type: 'ready' }
  | { type: 'prepared'; version: number; ok: boolean; error?: string; /** The config path of a filter that failed to build. */ path?: string }
  | { type: 'committed'; version: number; ok: boolean; error?: string; addresses: Record<string, string> }
  | { type: 'metrics'; id: number; snapshot: MetricsSnapshot }
  | { type: 'clusters'; id: number; clusters: object[] }
  | { type: 'drained'; open: number };

/**
 * A worker thread: builds snapshots when the main thread asks, swaps them in on commit, owns its listening
 * sockets (SO_REUSEPORT), and answers metrics and cluster queries for the admin API.
 */
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { RawConfig } from '../config/types.ts';
import { buildSnapshot, FilterBuildError, type Snapshot } from '../dataplane/snapshot.ts';
import { Metrics } from '../telemetry/metrics.ts';
import { createLogger } from '../telemetry/log.ts';
import { attachSharedStore } from '../core/shared-store.ts';
import { ListenerSocket } from './listener-socket.ts';
import { formatAddress } from '../core/units.ts';
import { startAccessLog, type AccessLog } from '../telemetry/access-log.ts';
import type { ToWorker, FromWorker } from './messages.ts';

const data = workerData as { index: number; sharedStore?: SharedArrayBuffer; logLevel: string };
const port = parentPort!;
const metrics = new Metrics();
const log = createLogger(data.logLevel, { worker: data.index });
if (data.sharedStore !== undefined) attachSharedStore(data.sharedStore);
const activeConnections = metrics.gauge('weir_downstream_connections_active', 'Open downstream connections', ['listener']);

let current: Snapshot | null = null;
const pending = new Map<number, { snap: Snapshot; baseDir: string }>();
const sockets = new Map<string, ListenerSocket>();
let accessLog: AccessLog | null = null;
let accessLogTarget: string | null = null;

function send(msg: FromWorker): void {
  port.postMessage(msg);
}

async function prepare(version: number, config: RawConfig, baseDir: string, prepared: Record<string, unknown>): Promise<void> {
  try {
    const snap = await buildSnapshot(config, { version, baseDir, workerIndex: data.index, metrics, log, prepared, previous: current });
    pending.set(version, { snap, baseDir });
    send({ type: 'prepared', version, ok: true });
  } catch (err) {
    send({ type: 'prepared', version, ok: false, error: (err as Error).message, path: err instanceof FilterBuildError ? err.path : undefined });
  }
}

async function commit(version: number, ports: Record<string, number>): Promise<void> {
  const entry = pending.get(version);
  pending.delete(version);
  const next = entry?.snap;
  if (entry === undefined || next === undefined) {
    send({ type: 'committed', version, ok: false, error: `No prepared config version ${version}`, addresses: {} });
    return;
  }
  const addresses: Record<string, string> = {};
  // Open new and moved listeners first; only when all of them bound does anything change.
  const opened = new Map<string, ListenerSocket>();
  try {
    for (const l of next.listeners.values()) {
      const configured = next.config.listeners.find((x) => x.name === l.name)!.address;
      const existing = sockets.get(l.name);
      if (existing !== undefined && existing.configured === configured) continue;
      const sock = new ListenerSocket(l, configured, activeConnections.labels(l.name));
      sock.boundPort = await sock.listen(ports[l.name] ?? l.port);
      opened.set(l.name, sock);
    }
  } catch (err) {
    for (const sock of opened.values()) sock.close();
    next.abandon(current);
    send({ type: 'committed', version, ok: false, error: (err as Error).message, addresses });
    return;
  }
  for (const [name, sock] of sockets) {
    if (!next.listeners.has(name) || opened.has(name)) {
      sock.close();
      sockets.delete(name);
    }
  }
  for (const l of next.listeners.values()) {
    const sock = opened.get(l.name) ?? sockets.get(l.name)!;
    sock.runtime = l;
    sockets.set(l.name, sock);
    addresses[l.name] = formatAddress(l.host, sock.boundPort);
  }
  const previous = current;
  current = next;
  if (previous !== null) previous.retire(new Set(next.clusters.values()));
  const target = next.config.access_log;
  const file = target === 'stdout' || target === 'off' ? undefined : path.resolve(entry.baseDir, target);
  if ((file ?? target) !== accessLogTarget) {
    accessLog?.stop();
    accessLogTarget = file ?? target;
    accessLog = startAccessLog(target, file, (err) => {
      log.pino.error({ err, access_log: file ?? target }, `Cannot write the access log to "${file ?? target}": ${err.message}; the access log is off`);
      // The next reload tries the target again, even unchanged.
      accessLogTarget = null;
    });
  }
  send({ type: 'committed', version, ok: true, addresses });
}

function drain(timeoutMs: number): void {
  for (const s of sockets.values()) s.close();
  const started = Date.now();
  const check = () => {
    let open = 0;
    for (const s of sockets.values()) open += s.connections.size;
    if (open === 0 || Date.now() - started >= timeoutMs) {
      for (const s of sockets.values()) for (const c of s.connections) c.destroy();
      // The streams of destroyed connections end on their 'close' events: their access log lines go out too.
      setTimeout(() => {
        accessLog?.flush();
        send({ type: 'drained', open });
      }, open === 0 ? 0 : 20);
      return;
    }
    setTimeout(check, 50);
  };
  check();
}

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'prepare':
      void prepare(msg.version, msg.config, msg.baseDir, msg.prepared);
      break;
    case 'commit':
      void commit(msg.version, msg.ports);
      break;
    case 'abort':
      pending.get(msg.version)?.snap.abandon(current);
      pending.delete(msg.version);
      break;
    case 'metrics':
      send({ type: 'metrics', id: msg.id, snapshot: metrics.snapshot() });
      break;
    case 'clusters':
      send({ type: 'clusters', id: msg.id, clusters: current === null ? [] : [...current.clusters.values()].map((c) => c.toJSON()) });
      break;
    case 'drain':
      drain(msg.timeoutMs);
      break;
    case 'soft-drain':
      for (const s of sockets.values()) s.drain();
      break;
  }
});

send({ type: 'ready' });

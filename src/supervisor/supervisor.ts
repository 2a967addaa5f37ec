/**
 * The main thread: loads and validates the config, prepares filters, runs the worker threads, applies
 * reloads to all workers or to none, and serves the admin API.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import diagnostics from 'node:diagnostics_channel';
import { parseConfig, formatProblems, locateProblems, type LocatePath } from '../config/parse.ts';
import { prepareFilters } from '../config/prepare.ts';
import type { RawConfig } from '../config/types.ts';
import { createSharedStore } from '../core/shared-store.ts';
import { releaseMemory } from '../core/release-memory.ts';
import { createLogger, type Logger } from '../telemetry/log.ts';
import { Metrics, mergeSnapshots, type MetricsSnapshot } from '../telemetry/metrics.ts';
import { CONFIG_RELOAD } from '../telemetry/channels.ts';
import type { ToWorker, FromWorker } from '../worker/messages.ts';
import { parseDuration, parseAddress } from '../core/units.ts';
import net from 'node:net';

/** The outcome of applying a config. */
export interface ApplyResult {
  ok: boolean;
  version: number;
  error?: string;
  /** Keys the reload changed that take a restart: the running values stay. */
  notApplied?: string[];
}

/** Config keys read once at start: a reload that changes them keeps the running value, and says so. */
function restartOnlyChanges(running: RawConfig, next: RawConfig, adminBound: string | null): string[] {
  const out: string[] = [];
  const say = (key: string, was: unknown, now: unknown) => {
    if (was !== now) out.push(`${key} changed from ${JSON.stringify(was)} to ${JSON.stringify(now)}: it takes a restart, weir keeps ${JSON.stringify(was)}`);
  };
  // Port 0 bound some port: naming that port is no change.
  if (next.admin.address !== adminBound) say('admin.address', running.admin.address, next.admin.address);
  say('log_level', running.log_level, next.log_level);
  say('watch', running.watch, next.watch);
  return out;
}

interface WorkerHandle {
  index: number;
  thread: Worker;
  waiters: Map<string, (msg: FromWorker) => void>;
}

const reloadChannel = diagnostics.channel(CONFIG_RELOAD);

/**
 * The young generation of each worker's heap, in MiB. V8 would grow it to 128 MiB under load and keep it: a
 * proxy's garbage dies young (scavenges cost what is alive, a few in-flight requests), so a smaller one costs no
 * measured CPU and saves that memory (BENCHMARKS.md, idle connections).
 */
const YOUNG_GENERATION_MB = 16;

/** The port of a bound address as workers report it ("127.0.0.1:8080", "[::1]:8080"). */
function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

/** Runs weir for one config file. */
export class Supervisor {
  readonly file: string;
  readonly workerCount: number;
  readonly log: Logger;
  readonly metrics = new Metrics();
  config: RawConfig | null = null;
  /** The admin API's bound "host:port", once it listens (its config address may say port 0). */
  adminBound: string | null = null;
  version = 0;
  loadedAt = '';
  lastReload: { ok: boolean; at: string; version: number; error?: string } | null = null;
  addresses: Record<string, string> = {};
  draining = false;
  readonly #workers: WorkerHandle[] = [];
  readonly #logLevelFromEnv: boolean;
  #nextId = 1;
  #applying: Promise<ApplyResult> = Promise.resolve({ ok: true, version: 0 });
  readonly #reloadsOk = this.metrics.counter('weir_config_reloads_total', 'Config loads and reloads, by result', ['result']);
  readonly #restarts = this.metrics.counter('weir_worker_restarts_total', 'Worker threads started again after one exited').labels();
  #sharedStore: SharedArrayBuffer | null = null;
  #logLevel = 'info';
  /** What the running config was applied with: a worker started after a crash gets the same. */
  #running: { version: number; config: RawConfig; baseDir: string; prepared: Record<string, unknown> } | null = null;
  /** When workers exited unasked, the last minute's worth. */
  #exits: number[] = [];

  constructor(file: string, workerCount: number) {
    this.file = path.resolve(file);
    this.workerCount = workerCount > 0 ? workerCount : os.availableParallelism();
    this.log = createLogger(process.env.WEIR_LOG_LEVEL ?? 'info', { pid: process.pid });
    this.#logLevelFromEnv = process.env.WEIR_LOG_LEVEL !== undefined;
  }

  /** Starts the workers and applies the config file; throws (with the problems) if it cannot start. */
  async start(): Promise<void> {
    const text = fs.readFileSync(this.file, 'utf8');
    const parsed = parseConfig(text);
    if (!parsed.ok) throw new Error(formatProblems(this.file, parsed.problems));
    if (!this.#logLevelFromEnv) this.log.pino.level = parsed.config.log_level;
    this.#sharedStore = createSharedStore().buffer;
    this.#logLevel = parsed.config.log_level;
    for (let i = 0; i < this.workerCount; i++) {
      if (!(await this.#startWorker(i))) throw new Error(`Worker thread ${i} exited while starting`);
    }
    const result = await this.apply(parsed.config, parsed.locate);
    if (!result.ok) throw new Error(result.error);
  }

  /** Starts worker `i` (in its slot of #workers); resolves with whether it came up. */
  #startWorker(i: number): Promise<boolean> {
    const thread = new Worker(new URL('../worker/worker.ts', import.meta.url), {
      workerData: { index: i, sharedStore: this.#sharedStore, logLevel: this.#logLevel },
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    const h: WorkerHandle = { index: i, thread, waiters: new Map() };
    this.#workers[i] = h;
    thread.on('message', (msg: FromWorker) => this.#onMessage(h, msg));
    thread.on('error', (err) => this.log.pino.error({ worker: i, err }, 'Worker thread crashed'));
    return new Promise((resolve) => {
      void this.#wait(h, 'ready').then(() => resolve(true));
      thread.on('exit', (code) => {
        resolve(false);
        this.#onExit(h, code);
      });
    });
  }

  /**
   * A worker thread ended. Unless weir is stopping, a new one takes its place with the running config, as an nginx
   * master starts a new worker process: the requests the old one was serving are lost, the listeners of the other
   * workers (SO_REUSEPORT) go on serving. More than ten exits in a minute stop weir: something is wrong at start.
   */
  #onExit(h: WorkerHandle, code: number): void {
    this.#failWaiters(h);
    // Before the first config is running, start() fails instead (it waits for the worker).
    if (this.draining || this.#workers[h.index] !== h || this.#running === null) return;
    const now = Date.now();
    this.#exits = this.#exits.filter((t) => now - t < 60_000);
    this.#exits.push(now);
    if (this.#exits.length > 10) {
      this.log.pino.fatal({ worker: h.index, code, exits: this.#exits.length }, 'Worker threads keep exiting; stopping');
      process.exit(1);
    }
    this.log.pino.error({ worker: h.index, code }, 'Worker thread exited; starting a new one');
    this.#restarts.inc();
    // After any reload in progress, so that the new worker gets the config the others run.
    this.#applying = this.#applying.then(() => this.#restart(h.index)).then(
      () => ({ ok: true, version: this.version }),
      (err: Error) => {
        this.log.pino.error({ worker: h.index, err }, 'Cannot start a worker thread again');
        return { ok: true, version: this.version };
      },
    );
  }

  async #restart(i: number): Promise<void> {
    if (this.draining || !(await this.#startWorker(i))) return;
    const w = this.#workers[i];
    const r = this.#running;
    if (r !== null) {
      const prepared = this.#wait(w, `prepared:${r.version}`);
      this.#send(w, { type: 'prepare', version: r.version, config: r.config, baseDir: r.baseDir, prepared: r.prepared });
      const p = (await prepared) as Extract<FromWorker, { type: 'prepared' }>;
      if (!p.ok) throw new Error(p.error);
      const ports: Record<string, number> = {};
      for (const [name, addr] of Object.entries(this.addresses)) ports[name] = portOf(addr);
      const committed = this.#wait(w, `committed:${r.version}`);
      this.#send(w, { type: 'commit', version: r.version, ports });
      const c = (await committed) as Extract<FromWorker, { type: 'committed' }>;
      if (!c.ok) throw new Error(c.error);
    }
    this.log.pino.info({ worker: i, version: this.version }, 'Worker thread started again');
  }

  /** Answers what waits on a worker that is gone, as the worker would have when failing, so that nothing hangs. */
  #failWaiters(h: WorkerHandle): void {
    const error = `worker thread ${h.index} exited`;
    for (const [key, waiter] of h.waiters) {
      const [type, tag] = key.split(':');
      const n = Number(tag);
      if (type === 'prepared') waiter({ type: 'prepared', version: n, ok: false, error });
      else if (type === 'committed') waiter({ type: 'committed', version: n, ok: false, error, addresses: {} });
      else if (type === 'metrics') waiter({ type: 'metrics', id: n, snapshot: new Metrics().snapshot() });
      else if (type === 'clusters') waiter({ type: 'clusters', id: n, clusters: [] });
      else if (type === 'drained') waiter({ type: 'drained', open: 0 });
    }
    h.waiters.clear();
  }

  /** Re-reads the config file and applies it; the running config stays if anything fails. */
  reload(): Promise<ApplyResult> {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      return Promise.resolve(this.#rejected(`Cannot read config file "${this.file}": ${(err as Error).message}`));
    }
    const parsed = parseConfig(text);
    if (!parsed.ok) return Promise.resolve(this.#rejected(formatProblems(this.file, parsed.problems)));
    return this.apply(parsed.config, parsed.locate);
  }

  /** Applies a validated config to every worker, or to none. Reloads run one at a time. */
  apply(config: RawConfig, locate?: LocatePath): Promise<ApplyResult> {
    // Whatever goes wrong in one reload is that reload's answer: the chain of reloads must never break.
    this.#applying = this.#applying.then(() =>
      this.#apply(config, locate).catch((err: Error) => this.#rejected(`${this.file}: ${err.message}`)),
    );
    void this.#applying.then(() => this.#releaseSoon());
    return this.#applying;
  }

  #releaseTimer: NodeJS.Timeout | null = null;

  /** Once reloads have stopped for a second, gives the garbage of parsing and applying back (see release-memory.ts). */
  #releaseSoon(): void {
    if (this.#releaseTimer !== null) clearTimeout(this.#releaseTimer);
    this.#releaseTimer = setTimeout(() => {
      this.#releaseTimer = null;
      releaseMemory();
    }, 1000);
    this.#releaseTimer.unref();
  }

  async #apply(config: RawConfig, locate: LocatePath | undefined): Promise<ApplyResult> {
    const version = this.version + 1;
    const baseDir = path.dirname(this.file);
    const { prepared, problems } = await prepareFilters(config, baseDir, (level, filter, m) => this.log.filter(level, filter, m), (reason) => this.#reapply(reason));
    if (problems.length > 0) return this.#rejected(formatProblems(this.file, locateProblems(problems, locate)));
    const busy = await this.#probeNewAddresses(config);
    if (busy.length > 0) return this.#rejected(busy.join('\n'));
    const results = await Promise.all(
      this.#workers.map((w) => {
        const reply = this.#wait(w, `prepared:${version}`);
        this.#send(w, { type: 'prepare', version, config, baseDir, prepared });
        return reply;
      }),
    );
    const failed = results.find((r) => r.type === 'prepared' && !r.ok) as { error?: string; path?: string } | undefined;
    if (failed !== undefined) {
      for (const w of this.#workers) this.#send(w, { type: 'abort', version });
      // A filter that failed to build says its path: say at which line.
      const at = failed.path !== undefined ? locate?.(failed.path) ?? {} : {};
      return this.#rejected(`${this.file}${at.line !== undefined ? `:${at.line}:${at.column}` : ''}: ${failed.error}`);
    }
    // The first worker binds first, so that port 0 becomes one concrete port that every worker shares.
    const ports: Record<string, number> = {};
    const addresses: Record<string, string> = {};
    for (const w of this.#workers) {
      const reply = this.#wait(w, `committed:${version}`);
      this.#send(w, { type: 'commit', version, ports });
      const r = (await reply) as Extract<FromWorker, { type: 'committed' }>;
      if (!r.ok) {
        // A listener could not bind: the workers that committed already run the new config. Say so loudly.
        this.log.pino.error({ worker: w.index, error: r.error }, 'Config commit failed on a worker');
        return this.#rejected(`Cannot start listeners: ${r.error}`);
      }
      for (const [name, addr] of Object.entries(r.addresses)) {
        addresses[name] = addr;
        ports[name] = portOf(addr);
      }
    }
    const notApplied = this.config === null ? [] : restartOnlyChanges(this.config, config, this.adminBound);
    if (this.config !== null) {
      // What runs is what /config shows.
      config = { ...config, admin: this.config.admin, log_level: this.config.log_level, watch: this.config.watch };
    }
    this.config = config;
    this.version = version;
    this.addresses = addresses;
    this.#running = { version, config, baseDir, prepared };
    this.loadedAt = new Date().toISOString();
    this.lastReload = { ok: true, at: this.loadedAt, version };
    this.#reloadsOk.labels('ok').inc();
    if (reloadChannel.hasSubscribers) reloadChannel.publish({ ok: true, version });
    this.log.pino.info({ version, listeners: addresses }, version === 1 ? 'Config loaded' : 'Config reloaded');
    for (const line of notApplied) this.log.pino.warn({ version }, `Not applied by the reload: ${line}`);
    return notApplied.length > 0 ? { ok: true, version, notApplied } : { ok: true, version };
  }

  /**
   * Workers bind with SO_REUSEPORT, which would let weir share a port with another process that uses it too.
   * Before binding a listener address weir does not hold yet, bind it once without that option: if that fails,
   * someone else is there.
   */
  async #probeNewAddresses(config: RawConfig): Promise<string[]> {
    const problems: string[] = [];
    for (const l of config.listeners) {
      const running = this.config?.listeners.find((x) => x.name === l.name);
      if (running?.address === l.address || l.address.endsWith(':0')) continue;
      const { host, port } = parseAddress(l.address);
      const error = await new Promise<string | null>((resolve) => {
        const probe = net.createServer();
        probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' ? 'address already in use' : err.message));
        probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
      });
      if (error !== null) problems.push(`Cannot listen on "${l.address}" for listener "${l.name}": ${error}`);
    }
    return problems;
  }

  #reapplyQueued = false;

  /** Applies the running config again, once, soon (a filter's resource became available in the background). */
  #reapply(reason: string): void {
    if (this.#reapplyQueued) return;
    this.#reapplyQueued = true;
    setTimeout(() => {
      this.#reapplyQueued = false;
      if (this.config === null || this.draining) return;
      this.log.pino.info({ reason }, 'Applying the running config again');
      void this.apply(this.config);
    }, 0).unref();
  }

  #rejected(error: string): ApplyResult {
    this.lastReload = { ok: false, at: new Date().toISOString(), version: this.version, error };
    this.#reloadsOk.labels('failed').inc();
    if (reloadChannel.hasSubscribers) reloadChannel.publish({ ok: false, version: this.version, error });
    this.log.pino.error({ version: this.version, error }, this.version === 0 ? 'Config rejected' : 'Config rejected; the running config stays');
    return { ok: false, version: this.version, error };
  }

  /** Merged metrics of every worker plus the main thread's. */
  async metricsSnapshot(): Promise<MetricsSnapshot> {
    const snaps = await Promise.all(
      this.#workers.map(async (w) => {
        const id = this.#nextId++;
        const reply = this.#wait(w, `metrics:${id}`);
        this.#send(w, { type: 'metrics', id });
        return ((await reply) as Extract<FromWorker, { type: 'metrics' }>).snapshot;
      }),
    );
    const mem = process.memoryUsage();
    const m = new Metrics();
    m.gauge('weir_process_resident_memory_bytes', 'Resident set size of the weir process').labels().set(mem.rss);
    m.gauge('weir_process_heap_used_bytes', 'V8 heap used, all threads of the main isolate').labels().set(mem.heapUsed);
    m.gauge('weir_workers', 'Worker threads').labels().set(this.#workers.length);
    m.gauge('weir_config_version', 'Version of the running config').labels().set(this.version);
    return mergeSnapshots([this.metrics.snapshot(), m.snapshot(), ...snaps]);
  }

  /** Each worker's view of its clusters. */
  async clusters(): Promise<{ worker: number; clusters: object[] }[]> {
    return Promise.all(
      this.#workers.map(async (w) => {
        const id = this.#nextId++;
        const reply = this.#wait(w, `clusters:${id}`);
        this.#send(w, { type: 'clusters', id });
        return { worker: w.index, clusters: ((await reply) as Extract<FromWorker, { type: 'clusters' }>).clusters };
      }),
    );
  }

  /** Asks every connection to close after its current exchange; /ready turns 503. */
  softDrain(): void {
    this.draining = true;
    for (const w of this.#workers) this.#send(w, { type: 'soft-drain' });
  }

  /** Stops accepting, lets requests in flight finish within the drain timeout, then stops the workers. */
  async shutdown(): Promise<void> {
    this.draining = true;
    const timeoutMs = this.config === null ? 0 : parseDuration(this.config.drain_timeout);
    await Promise.all(
      this.#workers.map((w) => {
        const reply = this.#wait(w, 'drained');
        this.#send(w, { type: 'drain', timeoutMs });
        return reply;
      }),
    );
    await Promise.all(this.#workers.map((w) => w.thread.terminate()));
  }

  #send(w: WorkerHandle, msg: ToWorker): void {
    w.thread.postMessage(msg);
  }

  #wait(w: WorkerHandle, key: string): Promise<FromWorker> {
    return new Promise((resolve) => w.waiters.set(key, resolve));
  }

  #onMessage(w: WorkerHandle, msg: FromWorker): void {
    let key: string = msg.type;
    if (msg.type === 'prepared' || msg.type === 'committed') key = `${msg.type}:${msg.version}`;
    else if (msg.type === 'metrics' || msg.type === 'clusters') key = `${msg.type}:${msg.id}`;
    const waiter = w.waiters.get(key);
    if (waiter !== undefined) {
      w.waiters.delete(key);
      waiter(msg);
    }
  }
}

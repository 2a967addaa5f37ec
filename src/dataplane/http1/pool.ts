/**
 * A connection pool to one upstream endpoint, per worker: idle connections are reused most-recent first,
 * new ones are opened up to the cluster's connection limit, and requests beyond it wait in a bounded queue.
 */
import { ProxyError } from '../../core/errors.ts';
import { ClientConnection, connect, type ConnectionOwner } from './client-connection.ts';
import type { ConnectionSource } from '../codec.ts';
import { formatAddress } from '../../core/units.ts';
import { wallNow } from '../../core/clock.ts';

/** Who waits for a connection. */
export interface PoolWaiter {
  onPoolReady(conn: ClientConnection, reused: boolean): void;
  onPoolFailure(error: ProxyError): void;
}

/** Cluster-wide limits a pool consults (the circuit breaker). */
export interface PoolLimits {
  /** Returns false when no connection may be opened now. */
  tryAcquireConnection(): boolean;
  releaseConnection(): void;
  /** Returns false when the pending queue is full. */
  tryAcquirePending(): boolean;
  releasePending(): void;
}

/** Pool settings. */
export interface PoolOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxIdle: number;
  maxHeaderSize: number;
  limits: PoolLimits;
  /** Observes connect outcomes (outlier detection, metrics). */
  onConnectFailure?(error: ProxyError): void;
}

const unlimited: PoolLimits = {
  tryAcquireConnection: () => true,
  releaseConnection: () => {},
  tryAcquirePending: () => true,
  releasePending: () => {},
};

/** The pool of one endpoint. */
export class Pool implements ConnectionOwner, ConnectionSource {
  readonly address: string;
  readonly #opts: PoolOptions;
  readonly #idle: ClientConnection[] = [];
  readonly #waiters: PoolWaiter[] = [];
  #open = 0;
  #sweeper: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(opts: Partial<PoolOptions> & { host: string; port: number }) {
    this.#opts = { connectTimeoutMs: 5000, idleTimeoutMs: 60_000, maxIdle: 128, maxHeaderSize: 65536, limits: unlimited, ...opts };
    this.address = formatAddress(opts.host, opts.port);
  }

  /** Open connections, busy or idle. */
  get openConnections(): number {
    return this.#open;
  }

  /** Idle connections ready for reuse. */
  get idleConnections(): number {
    return this.#idle.length;
  }

  /** Hands a connection to `w`: an idle one at once, a new one once connected, or later when one frees up. */
  acquire(w: PoolWaiter): void {
    if (this.#closed) {
      w.onPoolFailure(new ProxyError('UPSTREAM_CONNECT_FAILURE', `Pool for "${this.address}" is closed`));
      return;
    }
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      if (conn.usable) {
        w.onPoolReady(conn, true);
        return;
      }
    }
    if (this.#opts.limits.tryAcquireConnection()) {
      this.#connect(w);
      return;
    }
    if (!this.#opts.limits.tryAcquirePending()) {
      w.onPoolFailure(new ProxyError('UPSTREAM_OVERFLOW', `Cluster connection limit reached for "${this.address}" and the pending queue is full`));
      return;
    }
    this.#waiters.push(w);
  }

  /** Withdraws a waiter that no longer wants a connection (its client went away). */
  cancel(w: PoolWaiter): void {
    const i = this.#waiters.indexOf(w);
    if (i >= 0) {
      this.#waiters.splice(i, 1);
      this.#opts.limits.releasePending();
    }
  }

  /** Called by a connection whose exchange completed cleanly. */
  release(conn: ClientConnection): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      this.#opts.limits.releasePending();
      w.onPoolReady(conn, true);
      return;
    }
    if (this.#closed || this.#idle.length >= this.#opts.maxIdle) {
      conn.socket.destroy();
      return;
    }
    this.#idle.push(conn);
    conn.idleSince = wallNow();
    if (this.#sweeper === null && this.#opts.idleTimeoutMs > 0) {
      this.#sweeper = setInterval(() => this.#sweep(), Math.min(this.#opts.idleTimeoutMs, 1000));
      this.#sweeper.unref();
    }
  }

  /** Called by a connection that closed. */
  closed(conn: ClientConnection): void {
    this.#open--;
    this.#opts.limits.releaseConnection();
    const i = this.#idle.indexOf(conn);
    if (i >= 0) {
      this.#idle.splice(i, 1);
    }
    const w = this.#waiters.shift();
    if (w !== undefined) {
      this.#opts.limits.releasePending();
      this.acquire(w);
    }
  }

  /** Closes idle connections and refuses new work; busy connections finish their exchange. */
  close(): void {
    this.#closed = true;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    for (const c of this.#idle.splice(0)) c.socket.destroy();
    for (const w of this.#waiters.splice(0)) {
      this.#opts.limits.releasePending();
      w.onPoolFailure(new ProxyError('UPSTREAM_CONNECT_FAILURE', `Pool for "${this.address}" is closed`));
    }
  }

  #connect(w: PoolWaiter): void {
    this.#open++;
    const o = this.#opts;
    connect(o.host, o.port, o.connectTimeoutMs, (err, socket) => {
      if (err !== null) {
        this.#open--;
        o.limits.releaseConnection();
        o.onConnectFailure?.(err);
        w.onPoolFailure(err);
        // The slot is free again: a request waiting for one makes its own attempt instead of waiting for a
        // connection that will never be released (it would otherwise hang until its route timeout).
        const next = this.#waiters.shift();
        if (next !== undefined) {
          o.limits.releasePending();
          this.acquire(next);
        }
        return;
      }
      w.onPoolReady(new ClientConnection(socket!, this.address, this, o.maxHeaderSize), false);
    });
  }

  #sweep(): void {
    const cutoff = wallNow() - this.#opts.idleTimeoutMs;
    // Destroying closes later (the 'close' event takes it out of #idle), so the list can be walked as it is.
    for (const conn of this.#idle) if (conn.idleSince <= cutoff) conn.socket.destroy();
    if (this.#idle.length === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  }
}

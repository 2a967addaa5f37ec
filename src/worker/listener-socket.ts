/**
 * A listening socket of one worker. It outlives snapshots: a reload that keeps a listener's name and
 * address keeps the socket and only points it at the new ListenerRuntime.
 */
import { monoNow } from '../core/clock.ts';
import net from 'node:net';
import { ServerConnection } from '../dataplane/http1/server-connection.ts';
import { Stream } from '../dataplane/stream.ts';
import type { ListenerRuntime } from '../dataplane/listener-runtime.ts';
import type { Value } from '../telemetry/metrics.ts';

/** Connections idle between requests for this long give up their parser (see `ServerConnection.park`). */
const PARK_AFTER_MS = 500;

/** One listening socket (SO_REUSEPORT, so every worker can bind the same address). */
export class ListenerSocket {
  readonly name: string;
  /** The address as configured, e.g. "127.0.0.1:0"; a reload that changes it moves the listener. */
  readonly configured: string;
  runtime: ListenerRuntime;
  /** The port the socket is bound to (differs from the configured one for port 0). */
  boundPort = 0;
  readonly #server: net.Server;
  readonly connections = new Set<ServerConnection>();
  readonly #active: Value;
  #closing = false;
  /** Parks idle connections; runs while the listener has connections. */
  #sweep: NodeJS.Timeout | null = null;

  constructor(runtime: ListenerRuntime, configured: string, active: Value) {
    this.name = runtime.name;
    this.configured = configured;
    this.runtime = runtime;
    this.#active = active;
    this.#server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  /** Binds and listens; resolves with the bound port. */
  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: this.runtime.host, port, reusePort: true, backlog: 4096 }, () => {
        this.#server.removeListener('error', reject);
        resolve((this.#server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting; idle keep-alive connections close, busy ones finish their exchange first. */
  close(): void {
    this.#closing = true;
    this.#server.close();
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
    for (const c of this.connections) c.closeWhenIdle(true);
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const s = this.runtime.settings;
    this.#active.inc();
    const conn = new ServerConnection(socket, {
      maxHeaderSize: s.maxHeaderSize,
      maxUriSize: s.maxUriSize,
      normalizePath: s.normalizePath,
      mergeSlashes: s.mergeSlashes,
      headerTimeoutMs: s.headerTimeoutMs,
      idleTimeoutMs: s.idleTimeoutMs,
      onRequest: (c, head) => new Stream(this.runtime, c, head),
      onConnectionClose: (c) => {
        this.connections.delete(c);
        this.#active.dec();
      },
      onRejected: (c, err, status, head) => this.runtime.rejected(err, status, c.remoteAddress, head),
    });
    this.connections.add(conn);
    if (this.#draining) conn.closeWhenIdle(false);
    this.#sweep ??= setInterval(() => this.#parkIdle(), PARK_AFTER_MS).unref();
  }

  #parkIdle(): void {
    if (this.connections.size === 0) {
      clearInterval(this.#sweep!);
      this.#sweep = null;
      return;
    }
    const before = monoNow() - PARK_AFTER_MS;
    for (const c of this.connections) c.park(before);
  }

  #draining = false;

  /** Tells every connection to close after its current exchange (Connection: close), and new ones too. */
  drain(): void {
    this.#draining = true;
    for (const c of this.connections) c.closeWhenIdle(false);
  }
}

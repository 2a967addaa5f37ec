/**
 * The admin API (bound to 127.0.0.1 by default): readiness, the running config, clusters, Prometheus
 * metrics, reload and drain. Mutations are POST only, as in Envoy.
 */
import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Supervisor } from '../supervisor/supervisor.ts';
import { renderPrometheus } from '../telemetry/metrics.ts';
import { parseAddress } from '../core/units.ts';

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const INDEX = {
  'GET /ready': 'LIVE when serving, 503 while starting or draining',
  'GET /config': 'the running config and its version, and the last reload outcome',
  'GET /clusters': 'each worker\'s endpoints with health, outlier state and active requests',
  'GET /metrics': 'Prometheus text format',
  'POST /reload': 're-read the config file and apply it to all workers or none',
  'POST /drain': 'close connections after their current request; /ready turns 503',
};

/** Starts the admin server on `address`; resolves with the bound address. */
export function startAdmin(sup: Supervisor, address: string): Promise<{ address: string; server: http.Server }> {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const key = `${req.method} ${url.pathname}`;
    try {
      switch (key) {
        case 'GET /':
          return json(res, 200, INDEX);
        case 'GET /ready':
          res.writeHead(sup.draining || sup.version === 0 ? 503 : 200, { 'content-type': 'text/plain' });
          return res.end(sup.draining ? 'DRAINING\n' : sup.version === 0 ? 'PRE_INITIALIZING\n' : 'LIVE\n');
        case 'GET /config':
          return json(res, 200, { version: sup.version, loaded_at: sup.loadedAt, file: sup.file, last_reload: sup.lastReload, listeners: sup.addresses, config: sup.config });
        case 'GET /clusters':
          return json(res, 200, { workers: await sup.clusters() });
        case 'GET /metrics': {
          const text = renderPrometheus(await sup.metricsSnapshot());
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          return res.end(text);
        }
        case 'POST /reload': {
          const r = await sup.reload();
          return json(res, r.ok ? 200 : 400, r);
        }
        case 'POST /drain':
          sup.softDrain();
          return json(res, 200, { draining: true });
        default:
          if (Object.keys(INDEX).some((k) => k.endsWith(` ${url.pathname}`))) return json(res, 405, { error: `Method ${req.method} not allowed on ${url.pathname}` });
          return json(res, 404, { error: `No admin endpoint ${url.pathname}`, endpoints: INDEX });
      }
    } catch (err) {
      json(res, 500, { error: (err as Error).message });
    }
  });
  const { host, port } = parseAddress(address);
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`Cannot start the admin API on "${address}": ${(err as Error).message}`)));
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      resolve({ address: `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`, server });
    });
  });
}

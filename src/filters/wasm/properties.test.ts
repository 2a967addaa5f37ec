import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { getProperty } from './properties.ts';
import { ContextState, type PluginInfo } from './context.ts';
import { CallbacksForTest } from './harness-for-test.ts';
import { HeaderMap } from '../../core/headers.ts';
import type { WasmVm } from './vm.ts';
import { ENVOY_FLAG_BITS, ERRORS } from '../../core/errors.ts';
import { buildCorpus } from '../../../test/wasm-corpus/build.ts';
import { startWeir } from '../../../test/support/weir.ts';
import { startUpstream } from '../../../test/support/upstream.ts';

const plugin: PluginInfo = { name: 'p', rootId: 'r', vmId: 'v', configuration: new Uint8Array(), path: 'listeners[0].filters[0]', log: () => {} };
const vm = { rootProperties: new Map() } as unknown as WasmVm;

test('properties from the wire are its bytes: a non-ASCII User-Agent, Referer, path and query come back as sent', () => {
  const cb = new CallbacksForTest();
  // Header values hold one character per byte (latin1): "café" sent as UTF-8 is c a f 0xc3 0xa9.
  cb.requestHeaders = HeaderMap.from({ ':method': 'GET', ':path': '/p\xc3\xa9?q=\xe9', ':authority': 'h\xe9', ':scheme': 'http', 'user-agent': 'caf\xc3\xa9', referer: 'r\xe9' });
  const ctx = new ContextState({ id: 2, rootId: 1, plugin, callbacks: cb });
  const bytes = (...path: string[]) => Buffer.from(getProperty(vm, ctx, path)!);
  assert.deepEqual(bytes('request', 'useragent'), Buffer.from([0x63, 0x61, 0x66, 0xc3, 0xa9]));
  assert.deepEqual(bytes('request', 'referer'), Buffer.from([0x72, 0xe9]));
  assert.deepEqual(bytes('request', 'path'), Buffer.from('/p\xc3\xa9?q=\xe9', 'latin1'));
  assert.deepEqual(bytes('request', 'query'), Buffer.from([0x71, 0x3d, 0xe9]));
  assert.deepEqual(bytes('request', 'host'), Buffer.from([0x68, 0xe9]));
  assert.deepEqual(bytes('plugin_name'), Buffer.from('p'));
});

test('in on_log, response.code is the status sent, also when a local reply replaced the upstream response the filter saw', () => {
  const cb = new CallbacksForTest({ info: { responseCode: 502 } });
  cb.responseHeaders = HeaderMap.from({ ':status': '502' });
  const ctx = new ContextState({ id: 2, rootId: 1, plugin, callbacks: cb });
  ctx.maps[2] = HeaderMap.from({ ':status': '200' });
  const code = () => Buffer.from(getProperty(vm, ctx, ['response', 'code'])!).readBigInt64LE();
  assert.equal(code(), 200n, 'during the response, the headers the filter holds');
  ctx.logPhase = true;
  assert.equal(code(), 502n);
});

test('ENVOY_FLAG_BITS: each flag has the bit of its place in Envoy\'s CoreResponseFlag enum, and every catalogued flag but FF has one', () => {
  // Envoy's enum order (envoy/stream_info/stream_info.h), by short name; the bit is 1 << position.
  const order = ['LH', 'UH', 'UT', 'LR', 'UR', 'UF', 'UC', 'UO', 'NR', 'DI', 'FI', 'RL', 'UAEX', 'RLSE', 'DC', 'URX', 'SI', 'IH', 'DPE', 'UMSDR', 'RFCF', 'NFCF', 'DT', 'UPE', 'NC', 'OM'];
  for (const [flag, bit] of Object.entries(ENVOY_FLAG_BITS)) assert.equal(bit, 2 ** order.indexOf(flag), flag);
  const catalogued = new Set(Object.values(ERRORS).map((k) => k.flag));
  assert.deepEqual([...catalogued].filter((f) => ENVOY_FLAG_BITS[f] === undefined), ['FF']);
});

/** One client connection: sends a request, reads its whole response (every response here has a Content-Length). */
function connect(url: string) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let buf = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  socket.on('close', () => wake?.());
  return {
    async send(request: string): Promise<{ status: number; headers: [string, string][]; body: string }> {
      socket.write(request);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          const headers = lines.slice(1).map((l): [string, string] => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]);
          const length = Number(headers.find(([k]) => k === 'content-length')?.[1]);
          if (buf.length >= end + 4 + length) {
            const body = buf.subarray(end + 4, end + 4 + length).toString('latin1');
            buf = buf.subarray(end + 4 + length);
            return { status: Number(lines[0].split(' ')[1]), headers, body };
          }
        }
        if (socket.destroyed) throw new Error(`Connection closed before a whole response: ${JSON.stringify(buf.toString('latin1'))}`);
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    close: () => socket.destroy(),
  };
}

/** Envoy's HeaderMap::byteSize() of a header list: the bytes of every name and value, written here again. */
function byteSize(list: [string, string][]): number {
  return list.reduce((n, [k, v]) => n + Buffer.byteLength(k, 'latin1') + Buffer.byteLength(v, 'latin1'), 0);
}

test('properties.wat through weir run: request and response sizes, flags, code details and connection id, in each phase as Envoy has them', async () => {
  const corpus = await buildCorpus();
  const backend = await startUpstream((_q, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' }).end('abc'));
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const dead = `127.0.0.1:${(closed.address() as net.AddressInfo).port}`;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: props
        type: wasm
        file: modules/properties.wasm
    routes:
      - match: { prefix: /direct }
        direct_response: { status: 200, body: "hello" }
      - match: { prefix: /up }
        cluster: backend
      - match: { prefix: /dead }
        cluster: dead
clusters:
  - name: backend
    endpoints: [${backend.address}]
  - name: dead
    endpoints: [${dead}]
`, { files: { 'modules/properties.wasm': await readFile(corpus.properties) } });
  const a = connect(weir.url('edge'));
  const b = connect(weir.url('edge'));
  try {
    /** What the module logged for request `id` by phase (the last line of a phase), and its access log line. */
    const seen = async (id: string) => {
      const access = await weir.waitForLine((l) => l.msg === 'access' && l.request_id === id);
      const phases: Record<string, Record<string, string>> = {};
      for (const l of weir.lines().filter((l) => l.filter === 'props' && l.request_id === id)) {
        const [phase, ...pairs] = (l.msg as string).split('|');
        phases[phase] = Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
      }
      return { access, ...phases } as { access: Record<string, any> } & Record<'request_headers' | 'request_body' | 'response_headers' | 'log', Record<string, string>>;
    };
    // The request headers the filter sees: the codec's pseudo-headers, the client's, then the x-forwarded-* weir adds.
    const edge: [string, string][] = [['x-forwarded-for', '127.0.0.1'], ['x-forwarded-proto', 'http']];

    // A body with a Content-Length, answered by the upstream.
    const r1 = await a.send('POST /up HTTP/1.1\r\nhost: a\r\nx-request-id: r1\r\ncontent-length: 11\r\n\r\nhello world');
    assert.equal(r1.body, 'abc');
    const s1 = await seen('r1');
    const h1 = byteSize([[':authority', 'a'], [':path', '/up'], [':method', 'POST'], [':scheme', 'http'], ['x-request-id', 'r1'], ['content-length', '11'], ...edge]);
    // The response headers the filter sees and weir sends: what the client got, plus the hop-by-hop headers node's
    // upstream sent, which the HTTP/1 writer leaves out (Envoy too removes them after the filters).
    const res1 = byteSize([[':status', '200'], ...r1.headers, ['connection', 'keep-alive'], ['keep-alive', 'timeout=30']]);
    const id = s1.request_headers['connection.id'];
    assert.match(id, /^[1-9]\d*$/);
    assert.deepEqual(s1.request_headers, {
      'request.size': '11', 'request.total_size': String(h1), 'response.size': '0', 'response.total_size': '0',
      'response.flags': '0', 'connection.id': id, 'response.code_details': '!1',
    }, 'request headers: the Content-Length, the headers, nothing of a response yet');
    assert.equal(s1.request_body['request.total_size'], String(11 + h1));
    assert.deepEqual(s1.response_headers, { ...s1.request_headers, 'request.total_size': String(11 + h1), 'response.total_size': String(res1), 'response.code_details': 'via_upstream' });
    assert.deepEqual(s1.log, { ...s1.response_headers, 'response.size': '3', 'response.total_size': String(3 + res1) });
    assert.equal(s1.access.bytes_in, 11);
    assert.equal(s1.access.bytes_out, 3);

    // A chunked body: no Content-Length, so request.size is the bytes received so far; the same connection, the same id.
    const r2 = await a.send('POST /up HTTP/1.1\r\nhost: a\r\nx-request-id: r2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    assert.equal(r2.status, 200);
    const s2 = await seen('r2');
    // Transfer-Encoding describes the client's connection: it goes before the filters, as in Envoy.
    const h2 = byteSize([[':authority', 'a'], [':path', '/up'], [':method', 'POST'], [':scheme', 'http'], ['x-request-id', 'r2'], ...edge]);
    assert.equal(s2.request_headers['request.size'], '0');
    assert.equal(s2.request_headers['request.total_size'], String(h2));
    assert.equal(s2.request_body['request.size'], '5', 'the last body callback has seen it all');
    assert.equal(s2.log['request.size'], '5');
    assert.equal(s2.log['request.total_size'], String(5 + h2));
    assert.equal(s2.log['connection.id'], id);

    // No route: NR's bit, and the details the access log prints; another connection, another id.
    const r3 = await b.send('GET /nowhere HTTP/1.1\r\nhost: a\r\nx-request-id: r3\r\n\r\n');
    assert.equal(r3.status, 404);
    const s3 = await seen('r3');
    assert.equal(s3.access.flags, 'NR');
    assert.equal(s3.log['response.flags'], String(0x100));
    assert.ok(s3.access.details.length > 0);
    assert.equal(s3.log['response.code_details'], s3.access.details);
    assert.equal(s3.log['response.size'], String(r3.body.length));
    assert.equal(s3.log['response.size'], String(s3.access.bytes_out));
    assert.notEqual(s3.log['connection.id'], id);
    assert.match(s3.log['connection.id'], /^[1-9]\d*$/);

    // A direct response: its details, and its headers as weir builds them (the codec adds date when writing them).
    const r4 = await b.send('GET /direct HTTP/1.1\r\nhost: a\r\nx-request-id: r4\r\n\r\n');
    assert.equal(r4.body, 'hello');
    const s4 = await seen('r4');
    assert.equal(s4.log['response.code_details'], 'direct_response');
    assert.equal(s4.log['response.flags'], '0');
    assert.equal(s4.log['response.total_size'], String(5 + byteSize([[':status', '200'], ['content-type', 'text/plain'], ['content-length', '5']])));
    assert.equal(s4.log['connection.id'], s3.log['connection.id']);

    // A connect failure, retried: every flag of the access log's list, as Envoy's bits.
    const r5 = await b.send('GET /dead HTTP/1.1\r\nhost: a\r\nx-request-id: r5\r\n\r\n');
    assert.equal(r5.status, 503);
    const s5 = await seen('r5');
    assert.match(s5.access.flags, /^UF(,URX)?$/);
    const bits: Record<string, number> = { UF: 0x20, URX: 0x8000 };
    assert.equal(s5.log['response.flags'], String((s5.access.flags as string).split(',').reduce((n, f) => n | bits[f], 0)));
    assert.equal(s5.log['response.code_details'], s5.access.details);
  } finally {
    a.close();
    b.close();
    await weir.stop();
    await backend.close();
  }
});

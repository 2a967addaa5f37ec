import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { rawExchange } from '../support/raw.ts';

let up: Upstream;
let weir: Weir;

// Module filters written as a user would: plain TypeScript files next to the config.
const files = {
  'filters/auth.ts': `
export default {
  create(callbacks, config) {
    return {
      async onRequestHeaders(headers) {
        await new Promise((r) => setTimeout(r, 5)); // async work: the stream waits, the proxy does not
        if (headers.get('authorization') !== 'Bearer ' + config.token) {
          callbacks.sendLocalReply(401, 'missing or bad token', { headers: { 'www-authenticate': 'Bearer' } });
          return 'stop';
        }
        headers.set('x-user', 'alice');
        return 'continue';
      },
    };
  },
};
`,
  'filters/upper.ts': `
export default function createUpper(callbacks) {
  return {
    onRequestHeaders() {
      return 'stop'; // hold the headers until the body is known, so content-length can change
    },
    onRequestBody(chunk, end) {
      if (!end) return 'stop-and-buffer';
      chunk.data = Buffer.from(chunk.data.toString().toUpperCase() + '!');
      callbacks.requestHeaders.set('content-length', String(chunk.data.length));
      return 'continue';
    },
    onResponseHeaders(headers) {
      headers.remove('content-length');
      return 'continue';
    },
    onResponseBody(chunk, end) {
      if (!end) return 'stop-and-buffer';
      chunk.data = Buffer.from('[' + chunk.data.toString() + ']');
    },
  };
}
`,
  'filters/reason.ts': `
export default function createReason(callbacks) {
  return {
    onResponseHeaders() {
      callbacks.info.filterState.set('weir.http1_reason_phrase', decodeURIComponent(callbacks.requestHeaders.get('x-reason')));
    },
  };
}
`,
  'filters/boom.ts': `
export default function createBoom() {
  return { onRequestHeaders() { throw new Error('kaboom'); } };
}
`,
  'filters/meta.ts': `
export default function createMeta(callbacks, config, perRoute) {
  return {
    onRequestHeaders(h) {
      callbacks.info.dynamicMetadata.set('meta', { route: callbacks.info.routeName, tag: perRoute?.tag ?? config.tag });
    },
    onResponseHeaders(h) {
      h.set('x-meta', JSON.stringify(callbacks.info.dynamicMetadata.get('meta')));
    },
  };
}
`,
};

before(async () => {
  up = await startUpstream((req, res, body) => {
    const text = `${req.method} ${req.url} user=${req.headers['x-user'] ?? '-'} body=${body.toString()} cl=${req.headers['content-length'] ?? '-'}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  weir = await startWeir(
    `
listeners:
  - name: edge
    address: 127.0.0.1:0
    buffer_limit: 64KiB
    filters:
      - name: cors
        type: cors
        allow_origins: [https://app.example]
        allow_origin_regex: ['https://[a-z0-9-]+\\.preview\\.example']
        allow_headers: [authorization]
        max_age: 600
      - name: meta
        type: module
        file: filters/meta.ts
        config: { tag: listener }
      - name: auth
        type: module
        file: filters/auth.ts
        config: { token: s3cret }
    routes:
      - name: open
        match: { prefix: /open }
        cluster: up
        filter_overrides:
          auth: { disabled: true }
          meta: { config: { tag: open-route } }
      - name: upper
        match: { prefix: /upper }
        cluster: up
        filter_overrides:
          auth: { disabled: true }
        filters:
          - name: upper
            type: module
            file: filters/upper.ts
      - name: limited
        match: { prefix: /limited }
        cluster: up
        filter_overrides:
          auth: { disabled: true }
        filters:
          - name: limit
            type: local_rate_limit
            max_tokens: 2
            tokens_per_fill: 1
            fill_interval: 1h
      - name: reason
        match: { prefix: /reason }
        cluster: up
        filter_overrides:
          auth: { disabled: true }
        filters:
          - name: reason
            type: module
            file: filters/reason.ts
      - name: broken
        match: { prefix: /broken }
        cluster: up
        filter_overrides:
          auth: { disabled: true }
        filters:
          - name: boom
            type: module
            file: filters/boom.ts
      - name: private
        match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`,
    { files },
  );
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

test('a module filter stops on headers, does async work and answers 401 locally', async () => {
  const res = await fetch(`${weir.url('edge')}/private`);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  assert.equal(await res.text(), 'missing or bad token');
});

test('a module filter resumes after async work and its header change reaches the upstream', async () => {
  const res = await fetch(`${weir.url('edge')}/private/x`, { headers: { authorization: 'Bearer s3cret' } });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^GET \/private\/x user=alice/);
});

test('filter_overrides disables a listener filter for one route and overrides another one\'s config', async () => {
  const res = await fetch(`${weir.url('edge')}/open/a`);
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.headers.get('x-meta')!), { route: 'open', tag: 'open-route' });
  const priv = await fetch(`${weir.url('edge')}/private`, { headers: { authorization: 'Bearer s3cret' } });
  assert.deepEqual(JSON.parse(priv.headers.get('x-meta')!), { route: 'private', tag: 'listener' });
});

test('a route filter buffers and rewrites the request body (content-length follows) and the response body', async () => {
  const res = await fetch(`${weir.url('edge')}/upper`, { method: 'POST', body: 'hello' });
  assert.equal(await res.text(), '[POST /upper user=- body=HELLO! cl=6]');
});

test('a buffered request body over buffer_limit is refused with 413', async () => {
  const res = await fetch(`${weir.url('edge')}/upper`, { method: 'POST', body: 'x'.repeat(100 * 1024) });
  assert.equal(res.status, 413);
});

test('local_rate_limit answers 429 with rate-limit headers once the bucket is empty', async () => {
  const a = await fetch(`${weir.url('edge')}/limited`);
  const b = await fetch(`${weir.url('edge')}/limited`);
  const c = await fetch(`${weir.url('edge')}/limited`);
  assert.deepEqual([a.status, b.status, c.status], [200, 200, 429]);
  assert.equal(c.headers.get('x-ratelimit-limit'), '2');
  assert.equal(c.headers.get('x-ratelimit-remaining'), '0');
  assert.equal(await c.text(), 'local_rate_limited');
});

test('a filter that throws costs only its request: 500, one log line naming the filter, a counter', async () => {
  const res = await fetch(`${weir.url('edge')}/broken`);
  assert.equal(res.status, 500);
  const line = await weir.waitForLine((l) => l.filter === 'boom' && l.level === 50);
  assert.match(line.msg, /kaboom/);
  const ok = await fetch(`${weir.url('edge')}/open`);
  assert.equal(ok.status, 200);
  const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
  assert.match(metrics, /weir_filter_errors_total\{listener="edge",filter="boom"\} 1/);
});

test('cors answers a preflight locally and decorates responses for allowed origins only', async () => {
  const pre = await fetch(`${weir.url('edge')}/private`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization');
  assert.equal(pre.headers.get('access-control-max-age'), '600');
  const simple = await fetch(`${weir.url('edge')}/open`, { headers: { origin: 'https://app.example' } });
  assert.equal(simple.headers.get('access-control-allow-origin'), 'https://app.example');
  const other = await fetch(`${weir.url('edge')}/open`, { headers: { origin: 'https://evil.example' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
});

test('cors allow_origin_regex must match the whole origin, as Envoy safe_regex does', async () => {
  const allow = async (origin: string) =>
    (await fetch(`${weir.url('edge')}/open`, { headers: { origin } })).headers.get('access-control-allow-origin');
  assert.equal(await allow('https://pr-1.preview.example'), 'https://pr-1.preview.example');
  for (const origin of ['https://pr-1.preview.example.attacker.net', 'https://attacker.net?https://x.preview.example', 'xhttps://pr-1.preview.example']) {
    assert.equal(await allow(origin), null, origin);
  }
});

test('admin /metrics reports time spent in each filter', async () => {
  await fetch(`${weir.url('edge')}/open`);
  const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
  assert.match(metrics, /weir_filter_duration_ms_count\{listener="edge",filter="meta",type="module"\} \d+/);
});

test('a reason phrase a module filter sets in filter state goes on the status line, unless it holds a CR, LF or control character', async () => {
  const ask = async (reason: string) =>
    (await rawExchange(weir.url('edge'), `GET /reason HTTP/1.1\r\nhost: x\r\nx-reason: ${reason}\r\nconnection: close\r\n\r\n`, 3000)).text;
  assert.match(await ask('Quite%20Fine'), /^HTTP\/1\.1 200 Quite Fine\r\n/);
  for (const bad of ['OK%0D%0Ax-injected:%201', 'OK%0A', 'OK%00', 'Euro%E2%82%AC']) {
    const text = await ask(bad);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, bad);
    assert.doesNotMatch(text, /x-injected/, bad);
  }
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { rawExchange } from '../support/raw.ts';

let one: Upstream;
let two: Upstream;
let weir: Weir;

/** The config's clusters: `one` and `two`, each the upstream of that name. */
const clusters = () => `clusters:
  - name: one
    endpoints: [${one.address}]
  - name: two
    endpoints: [${two.address}]
`;

before(async () => {
  const named = (name: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name, url: req.url, host: req.headers.host, xfh: req.headers['x-forwarded-host'] ?? null }));
  };
  one = await startUpstream(named('one'));
  two = await startUpstream(named('two'));
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    virtual_hosts:
      - name: api
        domains: [api.example.com, "*.api.example.com"]
        routes:
          - match: { prefix: /v1/, methods: [GET] }
            cluster: one
            prefix_rewrite: /internal/
          - match: { prefix: /v1/ }
            cluster: two
      - name: rest
        domains: ["*"]
        routes:
          - match: { path: /exact }
            cluster: two
          - match: { regex: "/items/[0-9]+" }
            cluster: two
            regex_rewrite: { pattern: "^/items/", substitution: "/item-by-id/" }
          - match: { prefix: /h, headers: [{ name: x-canary, exact: "yes" }] }
            cluster: two
          - match: { prefix: /q, query: [{ name: beta, present: true }] }
            cluster: two
          - match: { prefix: /split }
            weighted_clusters: [{ name: one, weight: 1 }, { name: two, weight: 1 }]
          - match: { prefix: /rewrite-host }
            cluster: two
            host_rewrite: backend.internal
          - match: { prefix: / }
            cluster: one
${clusters()}`);
});

after(async () => {
  await weir?.stop();
  await one?.close();
  await two?.close();
});

async function hit(path: string, init: RequestInit & { host?: string } = {}): Promise<{ name: string; url: string; host: string; xfh: string | null }> {
  const headers = new Headers(init.headers);
  if (init.host) headers.set('host', init.host);
  // fetch does not let us set Host; use node:http for that.
  const { request } = await import('node:http');
  const u = new URL(weir.url('edge') + path);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path, method: init.method ?? 'GET', headers: Object.fromEntries(headers) },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`))));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('virtual hosts match exact and wildcard domains, and the method matcher splits routes', async () => {
  assert.deepEqual(await hit('/v1/users', { host: 'api.example.com' }).then((r) => [r.name, r.url]), ['one', '/internal/users']);
  assert.equal((await hit('/v1/users', { host: 'eu.api.example.com:8080' })).name, 'one', 'port and wildcard');
  assert.equal((await hit('/v1/users', { host: 'api.example.com', method: 'POST' })).name, 'two');
  assert.equal((await hit('/v1/users', { host: 'other.example.com' })).name, 'one', 'falls to the * host: prefix /');
});

test('exact path, regex with rewrite, header and query matchers', async () => {
  assert.equal((await hit('/exact')).name, 'two');
  assert.equal((await hit('/exact/more')).name, 'one');
  assert.deepEqual(await hit('/items/42?x=1').then((r) => [r.name, r.url]), ['two', '/item-by-id/42?x=1']);
  assert.equal((await hit('/items/abc')).name, 'one');
  assert.equal((await hit('/h', { headers: { 'x-canary': 'yes' } })).name, 'two');
  assert.equal((await hit('/h', { headers: { 'x-canary': 'no' } })).name, 'one');
  assert.equal((await hit('/q?beta=1')).name, 'two');
  assert.equal((await hit('/q?alpha=1')).name, 'one');
});

test('weighted clusters send traffic to both clusters', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 40 && seen.size < 2; i++) seen.add((await hit('/split')).name);
  assert.deepEqual([...seen].sort(), ['one', 'two']);
});

test('host_rewrite sets Host and x-forwarded-host keeps the original', async () => {
  const r = await hit('/rewrite-host', { host: 'public.example' });
  assert.equal(r.host, 'backend.internal');
  assert.equal(r.xfh, 'public.example');
});

test('an exact domain wins over a "*" virtual host listed before it, with or without a port', async () => {
  const up = await startUpstream((_q, res) => res.end('x'));
  const w = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    virtual_hosts:
      - name: fallback
        domains: ["*"]
        routes: [{ match: { prefix: / }, direct_response: { status: 200, body: fallback } }]
      - name: wild
        domains: ["*.example.com"]
        routes: [{ match: { prefix: / }, direct_response: { status: 200, body: wild } }]
      - name: api
        domains: [api.example.com]
        routes: [{ match: { prefix: / }, direct_response: { status: 200, body: api } }]
`);
  try {
    const { request } = await import('node:http');
    const get = (host: string) =>
      new Promise<string>((resolve, reject) => {
        const u = new URL(w.url('edge'));
        request({ host: u.hostname, port: u.port, path: '/', headers: { host } }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        })
          .on('error', reject)
          .end();
      });
    assert.equal(await get('api.example.com'), 'api');
    assert.equal(await get('API.example.com:8080'), 'api');
    assert.equal(await get('www.example.com'), 'wild');
    assert.equal(await get('other.org'), 'fallback');
  } finally {
    await w.stop();
    await up.close();
  }
});

test('a filter that changes request headers re-routes the request (clear_route_cache): by :path, by a header a route matches on, and not for other headers', async () => {
  const steer = `
    filters:
      - name: steer
        type: lua
        source: |
          function envoy_on_request(handle)
            local h = handle:headers()
            local p = h:get(":path")
            if p == "/to-canary" then h:add("x-canary", "yes")
            elseif p == "/move" then h:replace(":path", "/moved")
            elseif p == "/tag" then h:add("x-tag", "1") end
          end`;
  const w = await startWeir(`
listeners:
  - name: matchers
    address: 127.0.0.1:0${steer}
    routes:
      - match: { prefix: /, headers: [{ name: x-canary, exact: "yes" }] }
        cluster: two
      - match: { prefix: /moved }
        cluster: two
      - match: { prefix: / }
        cluster: one
  - name: paths
    address: 127.0.0.1:0${steer}
    routes:
      - match: { prefix: /moved }
        cluster: two
      - match: { prefix: / }
        cluster: one
${clusters()}`);
  try {
    const where = async (listener: string, path: string) => {
      const res = await fetch(`${w.url(listener)}${path}`);
      const body = (await res.json()) as { name: string; url: string };
      return `${body.name} ${body.url}`;
    };
    assert.equal(await where('matchers', '/to-canary'), 'two /to-canary');
    assert.equal(await where('matchers', '/move'), 'two /moved');
    assert.equal(await where('matchers', '/tag'), 'one /tag');
    assert.equal(await where('paths', '/move'), 'two /moved');
    assert.equal(await where('paths', '/tag'), 'one /tag');
    assert.equal(await where('paths', '/to-canary'), 'one /to-canary');
  } finally {
    await w.stop();
  }
});

test('the request path is normalised before routing (dot segments, %2e, unreserved %XX); a fragment is a 400', async () => {
  const up = await startUpstream((req, res) => res.end(req.url));
  const w = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /admin }
        direct_response: { status: 403, body: "admin is closed" }
      - match: { prefix: / }
        cluster: up
  - name: raw
    address: 127.0.0.1:0
    normalize_path: false
    merge_slashes: true
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`);
  try {
    const ask = async (listener: string, target: string) => {
      const { text } = await rawExchange(w.url(listener), `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`, 3000);
      return `${text.slice(9, 12)} ${text.slice(text.indexOf('\r\n\r\n') + 4)}`;
    };
    for (const target of ['/public/../admin', '/%2e%2e/admin', '/./admin/x', '/%61dmin', '/a/b/../../admin']) {
      assert.equal(await ask('edge', target), '403 admin is closed', target);
    }
    assert.equal(await ask('edge', '/public/./a/../b?next=../admin'), '200 /public/b?next=../admin');
    assert.equal(await ask('edge', '/a%2Fb//c'), '200 /a%2Fb//c', 'an encoded slash stays; slashes are not merged by default');
    assert.match(await ask('edge', '/admin#x'), /^400 /);
    assert.match(await ask('edge', '/public#../admin'), /^400 /);
    assert.equal(await ask('raw', '//a/../b'), '200 /a/../b', 'normalize_path: false, merge_slashes: true');
  } finally {
    await w.stop();
    await up.close();
  }
});

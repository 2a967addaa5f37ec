import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, formatProblems, pointerToPath } from './parse.ts';

const ok = `
listeners:
  - name: edge
    address: 127.0.0.1:8080
    routes:
      - match: { prefix: / }
        cluster: web
clusters:
  - name: web
    endpoints: [127.0.0.1:9003]
`;

test('parseConfig() fills defaults from the schema', () => {
  const r = parseConfig(ok);
  assert.ok(r.ok);
  assert.equal(r.config.admin.address, '127.0.0.1:9901');
  assert.equal(r.config.listeners[0].buffer_limit, '1MiB');
  assert.equal(r.config.clusters[0].lb, 'round_robin');
  assert.equal(r.config.access_log, 'stdout');
});

test('parseConfig() reads JSON too', () => {
  const r = parseConfig(JSON.stringify({ listeners: [{ name: 'e', address: '127.0.0.1:1', routes: [{ match: { prefix: '/' }, direct_response: { status: 200 } }] }] }));
  assert.ok(r.ok);
});

test('parseConfig() reports every problem at once, each with its path and line', () => {
  const bad = `listeners:
  - name: edge
    address: nowhere
    colour: blue
    routes:
      - match: { prefix: / }
        cluster: missing
      - match: { prefix: /a, path: /b }
        cluster: web
clusters:
  - name: web
    endpoints: [127.0.0.1:9003]
    connect_timeout: soon
`;
  const r = parseConfig(bad);
  assert.ok(!r.ok);
  const text = formatProblems('bad.yaml', r.problems);
  assert.match(text, /^bad\.yaml:3:5 listeners\[0\]\.address: invalid value "nowhere": expected "host:port"/m);
  assert.match(text, /^bad\.yaml:4:5 listeners\[0\]\.colour: unknown key "colour"/m);
  assert.match(text, /^bad\.yaml:13:5 clusters\[0\]\.connect_timeout: invalid value "soon": expected a duration/m);
  assert.match(text, /^bad\.yaml:7:9 listeners\[0\]\.routes\[0\]\.cluster: unknown cluster "missing"/m);
  assert.match(text, /^bad\.yaml:8:9 listeners\[0\]\.routes\[1\]\.match: give one of "prefix", "path" or "regex"/m);
  assert.equal(r.problems.length, 5);
});

test("cluster names may be Istio's (outbound|8181||auth.local); a name with a space is refused at its line", () => {
  const istio = ok.replaceAll('web', 'outbound|8181||auth.local').replace('cluster: outbound', 'cluster: "outbound').replace('auth.local\nclusters', 'auth.local"\nclusters').replace('- name: outbound|8181||auth.local', '- name: "outbound|8181||auth.local"');
  const r = parseConfig(istio);
  assert.ok(r.ok, r.ok ? '' : formatProblems('istio.yaml', r.problems));
  assert.equal(r.config.clusters[0].name, 'outbound|8181||auth.local');
  const spaced = parseConfig(ok.replace('  - name: web', '  - name: "web farm"').replace('cluster: web', 'cluster: "web farm"'));
  assert.ok(!spaced.ok);
  assert.match(formatProblems('c.yaml', spaced.problems), /^c\.yaml:9:5 clusters\[0\]\.name: invalid value "web farm": expected a name of letters, digits, /m);
});

test("a bad value is told what was expected, never the key's description or a raw pattern", () => {
  const bad = parseConfig(ok.replace('    endpoints: [127.0.0.1:9003]', '    endpoints: [127.0.0.1:9003]\n    timeout: soon\n    idle_timeout: later').replace('- name: edge', '- name: "edge one"'));
  assert.ok(!bad.ok);
  const text = formatProblems('c.yaml', bad.problems);
  assert.match(text, /clusters\[0\]\.timeout: invalid value "soon": expected a duration such as "250ms"/);
  assert.match(text, /clusters\[0\]\.idle_timeout: invalid value "later": expected a duration/);
  assert.match(text, /listeners\[0\]\.name: invalid value "edge one": expected a name of letters, digits, "_", "\.", ":" and "-"/);
  assert.doesNotMatch(text, /Default route timeout|Pooled connections|\^\[A-Za-z/);
});

test('parseConfig() checks references between sections', () => {
  const r = parseConfig(ok.replace('cluster: web', 'cluster: wbe').replace('prefix: / }', 'prefix: /, path: /x }'));
  assert.ok(!r.ok);
  const text = formatProblems('c.yaml', r.problems);
  assert.match(text, /listeners\[0\]\.routes\[0\]\.cluster: unknown cluster "wbe"/);
  assert.match(text, /give one of "prefix", "path" or "regex", not "prefix" and "path"/);
});

test('parseConfig() validates filter keys by type, and filter_overrides by the filter\'s per-route schema', () => {
  const cfg = `
listeners:
  - name: edge
    address: 127.0.0.1:8080
    filters:
      - name: tag
        type: headers
        request_add: { a: "1" }
        requestadd: {}
    routes:
      - match: { prefix: / }
        cluster: web
        filter_overrides:
          tag: { response_set: 5 }
          ghost: { disabled: true }
clusters:
  - name: web
    endpoints: [127.0.0.1:9003]
`;
  const r = parseConfig(cfg);
  assert.ok(!r.ok);
  const text = formatProblems('f.yaml', r.problems);
  assert.match(text, /f\.yaml:9:9 listeners\[0\]\.filters\[0\]\.requestadd: unknown key "requestadd"/);
  assert.match(text, /filter_overrides\.tag\.response_set: must be object/);
  assert.match(text, /filter_overrides\.ghost: no filter named "ghost" in listener "edge"/);
});

test('parseConfig() reports YAML syntax errors with their line', () => {
  const r = parseConfig('listeners:\n  - name: [unclosed\n');
  assert.ok(!r.ok);
  assert.ok(r.problems[0].line !== undefined);
});

test('pointerToPath() renders JSON pointers as config paths', () => {
  assert.equal(pointerToPath('/listeners/0/routes/12/match'), 'listeners[0].routes[12].match');
  assert.equal(pointerToPath(''), '');
});

test('parseConfig() checks port ranges, zero durations and sizes, zero weights and bodies on 204/304', () => {
  const bad = `admin: { address: 127.0.0.1:99999 }
listeners:
  - name: edge
    address: 127.0.0.1:70000
    buffer_limit: 0
    routes:
      - match: { prefix: /a }
        direct_response: { status: 204, body: "nope" }
      - match: { prefix: / }
        weighted_clusters: [{ name: web, weight: 0 }]
clusters:
  - name: web
    endpoints: [127.0.0.1:0]
    connect_timeout: -1
    health_check: { path: /h, interval: 0s }
`;
  const r = parseConfig(bad);
  assert.ok(!r.ok);
  const text = formatProblems('v.yaml', r.problems);
  for (const expected of [
    /v\.yaml:1:10 admin\.address: invalid port in "127\.0\.0\.1:99999"/,
    /v\.yaml:4:5 listeners\[0\]\.address: invalid port in "127\.0\.0\.1:70000": expected 0 to 65535/,
    /listeners\[0\]\.buffer_limit: invalid value 0: must be greater than zero/,
    /direct_response\.body: a 204 response has no body/,
    /weighted_clusters: the weights add up to zero/,
    /clusters\[0\]\.endpoints\[0\]: invalid port in "127\.0\.0\.1:0": expected 1 to 65535/,
    /clusters\[0\]\.connect_timeout: must be >= 0/,
    /clusters\[0\]\.health_check\.interval: invalid value "0s": must be greater than zero/,
  ]) assert.match(text, expected);
  assert.equal(r.problems.length, 8, text);
});

test('YAML aliases: an anchor reused by many routes is fine; an unknown alias and an alias bomb are problems at their line', () => {
  const routes = Array.from({ length: 300 }, (_, i) => `      - { match: { prefix: /r${i} }, cluster: web, retry: *retry }`).join('\n');
  const many = `
listeners:
  - name: edge
    address: 127.0.0.1:8080
    routes:
      - { match: { prefix: /first }, cluster: web, retry: &retry { retry_on: [gateway-error], num_retries: 2 } }
${routes}
clusters:
  - name: web
    endpoints: [127.0.0.1:9003]
`;
  const r = parseConfig(many);
  assert.ok(r.ok, r.ok ? '' : formatProblems('c.yaml', r.problems));
  assert.equal(r.config.listeners[0].routes![300].retry?.num_retries, 2);

  const unknown = parseConfig(ok.replace('match: { prefix: / }', 'match: *nope'));
  assert.ok(!unknown.ok);
  assert.deepEqual(unknown.problems, [{ path: '', line: 6, column: 16, message: 'unknown alias *nope: no anchor &nope is set before it' }]);

  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
  for (let i = 1; i < 9; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
  const exhausted = parseConfig(bomb.join('\n'));
  assert.ok(!exhausted.ok);
  assert.equal(exhausted.problems.length, 1);
  assert.match(exhausted.problems[0].message, /^aliases expand to more than 10000 nodes/);
  assert.equal(exhausted.problems[0].line, 2);
});

test('values that would fail every request or do nothing are refused at their line: header names and values, URL parts, prefix_rewrite without a prefix, backoffs, statuses, fill intervals', () => {
  const r = parseConfig(`listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - { name: rl, type: local_rate_limit, max_tokens: 1, fill_interval: 0s }
      - { name: cors, type: cors, allow_origins: ["*"], expose_headers: ["x-a\\r\\nb"] }
    routes:
      - match: { prefix: /a, headers: [{ name: "x bad", exact: "1" }] }
        direct_response: { status: 200, headers: { "bad name": "v", x-ok: "a\\r\\nInjected: 1" } }
        filter_overrides: { rl: { fill_interval: 10ms } }
      - match: { path: /b }
        cluster: c
        prefix_rewrite: /d
        host_rewrite: "evil\\r\\nx: 1"
        retry: { backoff_base: 1s, backoff_max: 100ms }
      - match: { prefix: /r }
        redirect: { location: "http://x/\\r\\nSet-Cookie: a=1" }
      - match: { path: /p }
        redirect: { prefix_rewrite: /q }
clusters:
  - name: c
    endpoints: [127.0.0.1:9]
    health_check: { path: /h, expected_statuses: [999] }
`);
  assert.ok(!r.ok);
  const got = r.problems.map((p) => `${p.line} ${p.path}: ${p.message}`);
  const want: [number, string, RegExp][] = [
    [5, 'listeners[0].filters[0].fill_interval', /shorter than 50ms/],
    [6, 'listeners[0].filters[1].expose_headers[0]', /expected an HTTP header name/],
    [8, 'listeners[0].routes[0].match.headers[0].name', /invalid value "x bad": expected an HTTP header name/],
    [9, 'listeners[0].routes[0].direct_response.headers', /invalid value "bad name": expected an HTTP header name/],
    [9, 'listeners[0].routes[0].direct_response.headers.x-ok', /expected a header value without CR, LF or NUL/],
    [10, 'listeners[0].routes[0].filter_overrides.rl.fill_interval', /fill_interval "10ms" is shorter than 50ms/],
    [13, 'listeners[0].routes[1].prefix_rewrite', /this route has none/],
    [14, 'listeners[0].routes[1].host_rewrite', /expected text without spaces or control characters/],
    [15, 'listeners[0].routes[1].retry.backoff_base', /backoff_base "1s" is longer than backoff_max "100ms"/],
    [17, 'listeners[0].routes[2].redirect.location', /expected text without spaces or control characters/],
    [19, 'listeners[0].routes[3].redirect.prefix_rewrite', /this route has none/],
    [23, 'clusters[0].health_check.expected_statuses[0]', /must be <= 599/],
  ];
  for (const [line, path, message] of want) {
    assert.ok(got.some((g) => g.startsWith(`${line} ${path}: `) && message.test(g)), `${line} ${path} ${message}\n${got.join('\n')}`);
  }
  assert.equal(got.length, want.length, got.join('\n'));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWeir } from '../support/weir.ts';

const BIN = fileURLToPath(new URL('../../bin/weir.js', import.meta.url));

/** Writes `files` (weir.yaml among them) to a new folder and runs `weir validate` on its weir.yaml. */
function validate(files: Record<string, string>): SpawnSyncReturns<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-validate-'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return spawnSync(process.execPath, [BIN, 'validate', path.join(dir, 'weir.yaml')], { encoding: 'utf8' });
}

test('weir validate reports what run would refuse before starting: Lua syntax errors with script and line, missing files, headers that could not be written', () => {
  const r = validate({
    'bad.lua': 'function envoy_on_request(handle)\n  local t = { a = 1\n  handle:headers():add("x", "1")\nend\n',
    'weir.yaml': `listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: bad
        type: lua
        file: ./bad.lua
      - name: inline
        type: lua
        source: |
          function envoy_on_request(h)
            h:headers():add("x" "y")
          end
      - name: gone
        type: wasm
        file: ./missing.wasm
      - name: split
        type: headers
        response_add: { x-a: "one\\r\\nInjected: yes" }
      - name: nofile
        type: module
        file: ./missing.ts
      - name: cors
        type: cors
        allow_origin_regex: ["("]
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`,
  });
  assert.equal(r.status, 1);
  // Every problem at once, each at the line of its filter in weir.yaml.
  assert.match(r.stderr, /weir\.yaml:5:9 listeners\[0\]\.filters\[0\]: filter "bad": Cannot compile Lua script "\.\/bad\.lua": \.\/bad\.lua:3: '}' expected/);
  assert.match(r.stderr, /weir\.yaml:8:9 listeners\[0\]\.filters\[1\]: filter "inline": Cannot compile Lua script "inline": inline:2: '\)' expected/);
  assert.match(r.stderr, /weir\.yaml:14:9 listeners\[0\]\.filters\[2\]: filter "gone": Cannot read Wasm module ".*missing\.wasm"/);
  assert.match(r.stderr, /weir\.yaml:17:9 listeners\[0\]\.filters\[3\]: filter "split": invalid value for header "x-a": it contains CR, LF or NUL/);
  assert.match(r.stderr, /weir\.yaml:20:9 listeners\[0\]\.filters\[4\]: filter "nofile": /);
  assert.match(r.stderr, /weir\.yaml:23:9 listeners\[0\]\.filters\[5\]: filter "cors": /);
  assert.match(r.stderr, /6 problems found/);
});

test('weir validate runs each Lua script\'s top-level code as a worker would: an error there is reported with filter, script and line', () => {
  const r = validate({
    'weir.yaml': `listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: lib
        type: lua
        source: |
          local lib = require("lib.mylibrary")
          function envoy_on_request(h) lib.run(h) end
      - name: env
        type: lua
        source: |
          local tag = os.getenv("SERVICE_TAG") or "none"
          function envoy_on_request(h) h:headers():add("x-tag", tag) end
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`,
  });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /listeners\[0\]\.filters\[0\]: filter "lib": Cannot run the top-level code of Lua script "lib": lib:1: require\(\) is not available in weir's Lua sandbox/);
  assert.doesNotMatch(r.stderr, /filters\[1\]/);
  assert.match(r.stderr, /^1 problem found$/m);
});

test('a module filter with a syntax error is reported with its file and line (JavaScript and TypeScript)', () => {
  const r = validate({
    'bad.mjs': 'export default (cb) => ({\n  onRequestHeaders(h) {\n    return ;;; }}}\n  },\n});\n',
    'bad.ts': 'export default () => ({});\nconst n: number = ;\n',
    'weir.yaml': `listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - { name: js, type: module, file: bad.mjs }
      - { name: ts, type: module, file: bad.ts }
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`,
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /listeners\[0\]\.filters\[0\]: filter "js": Cannot load module filter "js": \S*bad\.mjs:3: Unexpected token '}'/);
  assert.match(r.stderr, /listeners\[0\]\.filters\[1\]: filter "ts": Cannot load module filter "ts": \S*bad\.ts:2: /);
});

/** A listener on `address` that answers 200 itself, as a YAML list item. */
const listener = (name: string, address: string) => `  - name: ${name}
    address: "${address}"
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`;

test('weir validate refuses two listeners on one port whose addresses name the same socket, naming both; port 0 and distinct addresses pass', () => {
  const pairs: [string, string, boolean][] = [
    ['127.0.0.1:8080', 'localhost:8080', true],
    ['0.0.0.0:8081', '127.0.0.1:8081', true],
    ['[::1]:8082', 'localhost:8082', true],
    ['[::]:8083', '0.0.0.0:8083', true],
    ['[0:0:0:0:0:0:0:1]:8084', '[::1]:8084', true],
    ['127.0.0.1:8085', '127.0.0.1:8085', true],
    ['127.0.0.1:0', 'localhost:0', false],
    ['127.0.0.1:8086', '127.0.0.2:8086', false],
    ['0.0.0.0:8087', '[::1]:8087', false],
    ['127.0.0.1:8088', 'localhost:8089', false],
  ];
  const r = validate({ 'weir.yaml': `listeners:\n${pairs.map(([a, b], i) => listener(`a${i}`, a) + listener(`b${i}`, b)).join('')}` });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  pairs.forEach(([a, b, clash], i) => {
    if (!clash) return;
    const other = `listener "a${i}" (listeners[${2 * i}].address)`;
    const message = a === b ? `address "${b}" is already used by ${other}` : `address "${b}" overlaps "${a}" of ${other}: both would accept the same connections`;
    assert.ok(r.stderr.includes(` listeners[${2 * i + 1}].address: ${message}\n`), `pair ${i}:\n${r.stderr}`);
  });
  assert.match(r.stderr, /^6 problems found$/m);
});

test('weir run refuses to start with listeners on "127.0.0.1" and "localhost" of one port, which the kernel would split connections between', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const outcome = await startWeir(`listeners:\n${listener('edge', `127.0.0.1:${port}`)}${listener('side', `localhost:${port}`)}`).then(
    async (weir) => {
      await weir.stop();
      return 'started';
    },
    (err: Error) => err.message,
  );
  assert.ok(
    outcome.includes(`listeners[1].address: address "localhost:${port}" overlaps "127.0.0.1:${port}" of listener "edge" (listeners[0].address)`),
    outcome,
  );
});

test('the command line answers a bad option with its usage (exit 2, no stack trace), and --version with the version', () => {
  for (const args of [['run', '--bogus', 'weir.yaml'], ['validate', '--strict', 'weir.yaml'], ['run', '--workers']]) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, new RegExp(`^weir ${args[0]}: (Unknown option|Option .* argument missing)`));
    assert.match(r.stderr, /Usage:/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const v = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  assert.equal(v.status, 0);
  assert.equal(v.stdout, `weir ${pkg.version} (Node.js ${process.versions.node})\n`);
});

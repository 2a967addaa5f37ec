import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`,
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /listeners\[0\]\.filters\[0\]: filter "bad": Cannot compile Lua script "\.\/bad\.lua": \.\/bad\.lua:3: '}' expected/);
  assert.match(r.stderr, /listeners\[0\]\.filters\[1\]: filter "inline": Cannot compile Lua script "inline": inline:2: '\)' expected/);
  assert.match(r.stderr, /listeners\[0\]\.filters\[2\]: filter "gone": Cannot read Wasm module ".*missing\.wasm"/);
  assert.match(r.stderr, /listeners\[0\]\.filters\[3\]: filter "split": invalid value for header "x-a": it contains CR, LF or NUL/);
  assert.match(r.stderr, /4 problems found/);
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

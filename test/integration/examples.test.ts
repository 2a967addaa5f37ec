/**
 * The files a user copies first: every example config passes `weir validate`, a broken config is reported
 * with paths and lines, and the published JSON Schema matches what `weir schema` prints.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'weir.js');
const EXAMPLES = path.join(ROOT, 'examples');

function weir(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const exampleConfigs = fs
  .readdirSync(EXAMPLES)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

describe('examples/', () => {
  it('holds example configs', () => {
    assert.ok(exampleConfigs.includes('basic.yaml'), 'examples/basic.yaml is missing');
    assert.ok(exampleConfigs.length >= 5, `expected at least 5 example configs, found ${exampleConfigs.join(', ')}`);
  });

  for (const file of exampleConfigs) {
    it(`weir validate accepts examples/${file}`, () => {
      const r = weir('validate', path.join('examples', file));
      assert.equal(r.code, 0, `weir validate examples/${file} exited ${r.code}:\n${r.stderr}`);
      assert.match(r.stdout, /: valid \(/);
    });
  }

  it('module filter examples export a filter factory', async () => {
    const dir = path.join(EXAMPLES, 'filters');
    for (const file of fs.readdirSync(dir).filter((f) => /\.(ts|js|mjs)$/.test(f))) {
      const mod = (await import(pathToFileURL(path.join(dir, file)).href)) as { default?: unknown };
      const exp = mod.default as { create?: unknown } | ((...a: unknown[]) => unknown) | undefined;
      const ok = typeof exp === 'function' || (typeof exp === 'object' && exp !== null && typeof exp.create === 'function');
      assert.ok(ok, `examples/filters/${file} must export default a function or an object with create()`);
    }
  });
});

describe('weir validate on a broken config', () => {
  const broken = [
    'listeners:',
    '  - name: edge',
    '    address: 127.0.0.1:8080',
    '    idle_timout: 30s',
    '    routes:',
    '      - match: { prefix: / }',
    '        cluster: missing',
    '        timeout: 5 seconds',
    'clusters:',
    '  - name: web',
    '    endpoints: [127.0.0.1:9003]',
    '    lb: round-robin',
    '',
  ].join('\n');

  it('exits 1 and reports every problem with its file, line, column and path', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-examples-'));
    const file = path.join(dir, 'broken.yaml');
    fs.writeFileSync(file, broken);
    try {
      const r = weir('validate', file);
      assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stderr:\n${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      const expected = [
        `${file}:4:5 listeners[0].idle_timout: unknown key "idle_timout"`,
        `${file}:7:9 listeners[0].routes[0].cluster: unknown cluster "missing"`,
        `${file}:8:9 listeners[0].routes[0].timeout: invalid value "5 seconds"`,
        `${file}:12:5 clusters[0].lb: must be one of "round_robin"`,
      ];
      for (const prefix of expected) {
        assert.ok(lines.some((l) => l.startsWith(prefix)), `no line starts with ${JSON.stringify(prefix)} in:\n${r.stderr}`);
      }
      assert.equal(lines.at(-1), '4 problems found');
      assert.equal(r.stdout, '');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('schema/weir.schema.json', () => {
  it('equals the output of weir schema', () => {
    const published = fs.readFileSync(path.join(ROOT, 'schema', 'weir.schema.json'), 'utf8');
    const r = weir('schema');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      published === r.stdout,
      'schema/weir.schema.json is out of date with the config schema: run `npm run schema` and commit the result',
    );
  });
});

/**
 * The access log through the CLI: lines are written in batches, so these check that none is lost or torn, under
 * concurrent load, on stdout and in a file, and at shutdown; and that a target that cannot be opened is reported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { startWeir } from '../support/weir.ts';
import { startUpstream } from '../support/upstream.ts';

const config = (target: string, upstream: string) => `
access_log: ${target}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${upstream}]
`;

/** Sends `total` requests over `concurrency` keep-alive connections; each path is unique. */
async function load(base: string, total: number, concurrency: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      await new Promise<void>((resolve, reject) => {
        http.get(`${base}/req-${i}`, { agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        }).on('error', reject);
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
}

function paths(lines: Record<string, any>[]): Set<string> {
  return new Set(lines.filter((l) => l.msg === 'access').map((l) => l.path));
}

test('every request of a concurrent load gets one whole line in the file, all written by the time weir stops', async () => {
  const up = await startUpstream((_q, res) => res.end('ok'));
  const weir = await startWeir(config('./logs/access.log', up.address), { workers: 2 });
  try {
    await load(weir.url('edge'), 2000, 32);
  } finally {
    assert.equal(await weir.stop(), 0);
    await up.close();
  }
  const text = fs.readFileSync(path.join(weir.dir, 'logs', 'access.log'), 'utf8');
  assert.ok(text.endsWith('\n'));
  const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2000);
  assert.equal(paths(lines).size, 2000);
  assert.ok(lines.every((l) => l.level === 30 && l.status === 200 && typeof l.time === 'string' && l.listener === 'edge'));
});

test('on stdout, access lines and the proxy\'s own log lines stay whole', async () => {
  const up = await startUpstream((_q, res) => res.end('ok'));
  const weir = await startWeir(config('stdout', up.address));
  try {
    await load(weir.url('edge'), 500, 16);
  } finally {
    await weir.stop();
    await up.close();
  }
  // startWeir parses every stdout line as JSON; a torn line would be missing from lines().
  assert.equal(paths(weir.lines()).size, 500);
  assert.ok(weir.lines().some((l) => l.msg === 'Stopped'));
});

test('an access log file that cannot be opened is reported with its path, and requests still flow', async () => {
  const up = await startUpstream((_q, res) => res.end('ok'));
  const weir = await startWeir(config('./not-a-dir/access.log', up.address), { files: { 'not-a-dir': 'a file, not a folder' } });
  try {
    const line = await weir.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('Cannot write the access log'));
    assert.match(line.msg, /not-a-dir\/access\.log/);
    const res = await fetch(`${weir.url('edge')}/still-served`);
    assert.equal(await res.text(), 'ok');
    // Once the folder exists, a reload of the unchanged config opens the file.
    fs.rmSync(path.join(weir.dir, 'not-a-dir'));
    fs.mkdirSync(path.join(weir.dir, 'not-a-dir'));
    assert.equal((await weir.reload()).status, 200);
    await (await fetch(`${weir.url('edge')}/after-reload`)).text();
    await weir.stop();
    const lines = fs.readFileSync(path.join(weir.dir, 'not-a-dir', 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.path), ['/after-reload']);
  } finally {
    await weir.stop();
    await up.close();
  }
});

test('an access log on a named pipe that nobody reads does not hold weir up: reported, and a reload once a reader is there writes to it', async () => {
  const up = await startUpstream((_q, res) => res.end('ok'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-fifo-'));
  const fifo = path.join(dir, 'access.pipe');
  execFileSync('mkfifo', [fifo]);
  const weir = await startWeir(config(fifo, up.address));
  try {
    const line = await weir.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('Cannot write the access log'));
    assert.match(line.msg, /access\.pipe.*named pipe that no process reads/);
    assert.equal(await (await fetch(`${weir.url('edge')}/unlogged`)).text(), 'ok');
    // Opened without blocking (a plain open waits for a writer), and read as a pipe by the event loop.
    const reader = new net.Socket({ fd: fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false });
    let text = '';
    reader.setEncoding('utf8');
    reader.on('data', (d) => (text += d));
    assert.equal((await weir.reload()).status, 200);
    await (await fetch(`${weir.url('edge')}/logged`)).text();
    const deadline = Date.now() + 5000;
    while (!text.includes('/logged') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(JSON.parse(text.trim().split('\n')[0]).path, '/logged');
    reader.destroy();
  } finally {
    await weir.stop();
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

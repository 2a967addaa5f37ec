/**
 * Response bodies of known length, which weir reads from the upstream socket into a buffer it reuses and writes to
 * the client from there (when no filter looks at the body): the bytes must arrive intact whoever keeps them past the read (a client too slow for the
 * write to complete at once, a filter that buffers the body, an httpCall() that collects it), and the framing must
 * hold at the edges (bytes after the body, an upstream that closes early, a body that trickles in).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { RawConnection } from '../support/raw-connection.ts';
import { PATTERN, patternChecker, patternSource } from '../support/pattern.ts';

const MiB = 1024 ** 2;

let up: Upstream;
let raw: net.Server;
let rawConnections = 0;
let weir: Weir;

before(async () => {
  up = await startUpstream(
    (req, res) => {
      const params = new URL(req.url!, 'http://x').searchParams;
      const size = Number(params.get('size'));
      setTimeout(() => {
        const wait = params.has('wait') ? { 'x-wait': '1' } : {};
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size), ...wait });
        const piece = Number(params.get('piece') ?? 0);
        if (piece === 0) return void patternSource(size).pipe(res);
        // Small writes a millisecond apart: weir reads them as small chunks.
        let sent = 0;
        const pump = (): void => {
          if (sent >= size) return void res.end();
          const off = sent % PATTERN.length;
          const n = Math.min(piece, PATTERN.length - off, size - sent);
          sent += n;
          if (res.write(PATTERN.subarray(off, off + n))) setTimeout(pump, 1);
          else res.once('drain', pump);
        };
        pump();
      }, Number(params.get('delay') ?? 0));
    },
    { stream: true },
  );
  raw = net.createServer((socket) => {
    rawConnections++;
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      if (text.startsWith('GET /raw/extra ')) {
        // Five bytes more than the Content-Length says, in the same write.
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA');
      } else if (text.startsWith('GET /raw/huge ')) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 9007199254740993\r\n\r\nabc');
      } else if (text.startsWith('GET /raw/cut ')) {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b');
      } else if (text.startsWith('GET /raw/drip ')) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n');
        void (async () => {
          for (const ch of 'dripped') {
            await new Promise((r) => setTimeout(r, 5));
            socket.write(ch);
          }
        })();
      } else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const rawPort = (raw.address() as net.AddressInfo).port;
  weir = await startWeir(
    `
listeners:
  - name: bare
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /raw/ }
        cluster: raw
      - match: { prefix: / }
        cluster: up
  - name: tagged
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: headers
        response_add: { x-served-by: weir }
    routes:
      - match: { prefix: / }
        cluster: up
  - name: lua-tagged
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: lua
        source: |
          function envoy_on_response(handle)
            handle:headers():add("x-served-by", "lua")
          end
    routes:
      - match: { prefix: / }
        cluster: up
  - name: buffering
    address: 127.0.0.1:0
    buffer_limit: 8MiB
    filters:
      - name: whole
        type: lua
        source: |
          function envoy_on_response(handle)
            if handle:headers():get("x-wait") ~= nil then
              -- The body arrives while the headers wait here: the chain holds its chunks.
              local headers = handle:httpCall("up", {
                [":method"] = "GET", [":path"] = "/pattern?size=1&delay=200", [":authority"] = "up"
              }, "", 5000)
              handle:headers():add("x-waited", headers[":status"])
              return
            end
            local length = handle:body():length()
            handle:headers():add("x-body-length", tostring(length))
          end
    routes:
      - match: { prefix: / }
        cluster: up
  - name: calling
    address: 127.0.0.1:0
    filters:
      - name: fetch
        type: lua
        source: |
          function envoy_on_request(handle)
            local headers, body = handle:httpCall("up", {
              [":method"] = "GET", [":path"] = "/pattern?size=3000000", [":authority"] = "up"
            }, "", 5000)
            handle:respond({[":status"] = headers[":status"]}, body)
          end
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
    timeout: 0s
  - name: raw
    endpoints: [127.0.0.1:${rawPort}]
`,
  );
});

after(async () => {
  await weir?.stop();
  await up?.close();
  raw?.close();
});

/** Downloads `path` from `listener`, pausing `pauseMs` after every `burst` bytes; checks the bytes against the pattern. */
function download(listener: string, path: string, burst = Infinity, pauseMs = 0): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number; bad: number }> {
  const { hostname, port } = new URL(weir.url(listener));
  return new Promise((resolve, reject) => {
    http
      .get({ host: hostname, port, path, agent: false }, (res) => {
        const checker = patternChecker();
        let sinceBreak = 0;
        res.on('data', (c: Buffer) => {
          checker.check(c);
          sinceBreak += c.length;
          if (sinceBreak >= burst) {
            sinceBreak = 0;
            res.pause();
            setTimeout(() => res.resume(), pauseMs);
          }
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, bytes: checker.bytes, bad: checker.bad }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

test('a body of known length arrives intact at a client that reads in bursts (the writes cannot complete at once)', async () => {
  const size = 48 * MiB + 13;
  const r = await download('bare', `/pattern?size=${size}`, 2 * MiB, 20);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(size));
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('a body that comes in small reads arrives intact at a client that stops reading for a while', async () => {
  // Once the kernel's buffers towards the client are full, each small chunk's write is left in flight while the
  // socket stays under its high-water mark: the upstream goes on being read, into another buffer.
  const size = 16 * MiB + 5;
  const r = await download('bare', `/pattern?size=${size}&piece=16000`, 6 * MiB, 800);
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('through a filter that sees only headers, a body in small reads arrives intact at a client that stops reading', async () => {
  const size = 16 * MiB + 5;
  const r = await download('tagged', `/pattern?size=${size}&piece=16000`, 6 * MiB, 800);
  assert.equal(r.headers['x-served-by'], 'weir');
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('past a Lua filter whose response handler has ended, a body in small reads arrives intact at a client that stops reading', async () => {
  // The chain no longer calls the ended handler's body hooks: the lent chunks go to the client as they come.
  const size = 16 * MiB + 5;
  const r = await download('lua-tagged', `/pattern?size=${size}&piece=16000`, 6 * MiB, 800);
  assert.equal(r.headers['x-served-by'], 'lua');
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('four slow downloads at once on four upstream connections arrive intact', async () => {
  const sizes = [16 * MiB + 1, 12 * MiB + 777, 8 * MiB + 4095, 20 * MiB];
  const results = await Promise.all(sizes.map((size, i) => download('bare', `/pattern?size=${size}&i=${i}`, (i + 1) * 512 * 1024, 5 + i * 3)));
  results.forEach((r, i) => {
    assert.equal(r.bytes, sizes[i], `download ${i}`);
    assert.equal(r.bad, 0, `download ${i}`);
  });
});

test('a filter that buffers the response body gets it intact, and so does the client', async () => {
  const size = 5 * MiB + 3;
  const r = await download('buffering', `/pattern?size=${size}`);
  assert.equal(r.status, 200, weir.logs.slice(-5).join('\n'));
  assert.equal(r.headers['x-body-length'], String(size));
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('response body chunks the chain holds while a filter waits arrive intact', async () => {
  const size = 5 * MiB + 3;
  const r = await download('buffering', `/pattern?size=${size}&wait=1`);
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-waited'], '200');
  assert.equal(r.bytes, size);
  assert.equal(r.bad, 0);
});

test('an httpCall() that collects a large body gets it intact', async () => {
  const r = await download('calling', '/');
  assert.equal(r.status, 200);
  assert.equal(r.bytes, 3_000_000);
  assert.equal(r.bad, 0);
});

test('bytes after a body of known length: the response is whole and that upstream connection is not reused', async () => {
  const first = await fetch(`${weir.url('bare')}/raw/extra`);
  assert.equal(await first.text(), 'hello');
  const before = rawConnections;
  const second = await fetch(`${weir.url('bare')}/raw/next`);
  assert.equal(await second.text(), 'ok');
  assert.equal(rawConnections, before + 1, 'the confused connection was closed, a new one opened');
});

test('an upstream that closes before the end of a body of known length: the client connection is cut, not ended', async () => {
  const c = await RawConnection.open(weir.url('bare'));
  c.write('GET /raw/cut HTTP/1.1\r\nhost: test.local\r\n\r\n');
  const deadline = Date.now() + 5000;
  while (!c.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(c.ended, 'weir closed the client connection');
  const text = c.pending.toString('latin1');
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /content-length: 100\r\n/i);
  assert.ok(text.endsWith('\r\n\r\nonly ten b'), `the client got the ten bytes that came, then the close: ${JSON.stringify(text)}`);
});

test('a Content-Length past 2^53 - 1 is refused with 502, not passed on as another number', async () => {
  const res = await fetch(`${weir.url('bare')}/raw/huge`);
  assert.equal(res.status, 502);
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/raw/huge');
  assert.equal(line.flags, 'UPE');
  assert.match(line.details, /Content-Length 9007199254740993 is larger than weir can frame/);
});

test('a body of known length that arrives a byte at a time is forwarded whole', async () => {
  const c = await RawConnection.open(weir.url('bare'));
  for (let i = 0; i < 2; i++) {
    c.write('GET /raw/drip HTTP/1.1\r\nhost: test.local\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'dripped');
  }
  c.destroy();
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderMap } from '../core/headers.ts';
import { Pipeline, type PipelineSink } from './chain.ts';
import type { BodyChunk, Filter } from '../filters/contract.ts';

function recorder() {
  const events: string[] = [];
  let halted = false;
  const sink: PipelineSink & { events: string[]; halt(): void } = {
    events,
    halt: () => (halted = true),
    headers: (h, eos) => events.push(`headers ${h.get('x') ?? ''}${eos ? ' eos' : ''}`),
    data: (c, eos) => events.push(`data ${c.toString()}${eos ? ' eos' : ''}`),
    trailers: (t) => events.push(`trailers ${t.get('t')}`),
    filterFailed: (i, e) => events.push(`failed ${i} ${(e as Error).message}`),
    overflow: (i) => events.push(`overflow ${i}`),
    block: () => events.push('block'),
    unblock: () => events.push('unblock'),
    stopped: () => {},
    get halted() {
      return halted;
    },
  };
  return sink;
}

const headers = () => new HeaderMap([':path', '/']);

test('Pipeline passes headers, data and trailers through filters that continue', () => {
  const seen: string[] = [];
  const f: Filter = {
    onRequestHeaders: (h) => {
      seen.push('h');
      h.set('x', '1');
    },
    onRequestBody: (c) => {
      seen.push(`b ${c.data}`);
      c.data = Buffer.from(c.data.toString().toUpperCase());
      return 'continue';
    },
    onRequestTrailers: () => {
      seen.push('t');
    },
  };
  const sink = recorder();
  const p = new Pipeline([f, {}], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('ab'), false);
  p.trailers(new HeaderMap(['t', 'v']));
  assert.deepEqual(sink.events, ['headers 1', 'data AB', 'trailers v']);
  assert.deepEqual(seen, ['h', 'b ab', 't']);
});

test('Pipeline holds data behind a filter stopped on headers with stop-all, and releases it in order on resume', () => {
  const later: string[] = [];
  const a: Filter = { onRequestHeaders: () => 'stop-all', onRequestBody: (c) => void later.push(`a ${c.data}`) };
  const b: Filter = { onRequestBody: (c) => void later.push(`b ${c.data}`) };
  const sink = recorder();
  const p = new Pipeline([a, b], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('1'), false);
  p.data(Buffer.from('2'), true);
  assert.deepEqual(sink.events, []);
  assert.deepEqual(later, [], 'stop-all: the stopped filter sees no body yet');
  p.resume(0);
  assert.deepEqual(sink.events, ['headers ', 'data 1', 'data 2 eos']);
  assert.deepEqual(later, ['a 1', 'b 1', 'a 2', 'b 2']);
});

test('Pipeline delivers the body to a filter that stopped its headers with stop; continuing the body continues the headers', () => {
  const a: Filter = {
    onRequestHeaders: () => 'stop',
    onRequestBody: (c, eos) => (eos ? 'continue' : 'stop-and-buffer'),
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('x'), false);
  p.data(Buffer.from('y'), false);
  assert.deepEqual(sink.events, []);
  p.data(Buffer.from('z'), true);
  assert.deepEqual(sink.events, ['headers ', 'data xyz eos']);
});

test('Pipeline calls a buffering filter again with the whole body so far (cumulative)', () => {
  const sizes: number[] = [];
  const a: Filter = {
    onRequestBody: (c, eos) => {
      sizes.push(c.data.length);
      return eos ? 'continue' : 'stop-and-buffer';
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('aa'), false);
  p.data(Buffer.from('bbb'), false);
  p.data(Buffer.from('c'), true);
  assert.deepEqual(sizes, [2, 5, 6]);
  assert.deepEqual(sink.events, ['headers ', 'data aabbbc eos']);
});

test('Pipeline reports an overflow when buffering passes the limit', () => {
  const a: Filter = { onRequestBody: () => 'stop-and-buffer' };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 4);
  p.headers(headers(), false);
  p.data(Buffer.from('abc'), false);
  p.data(Buffer.from('de'), false);
  assert.deepEqual(sink.events, ['headers ', 'overflow 0']);
});

test('Pipeline holds a chunk a filter stopped on, with back-pressure, and passes later chunks through the filter after resume', () => {
  const seen: string[] = [];
  let stopOnce = true;
  const a: Filter = {
    onRequestBody: (c) => {
      seen.push(c.data.toString());
      if (stopOnce) {
        stopOnce = false;
        return 'stop';
      }
      return 'continue';
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 2);
  p.headers(headers(), false);
  p.data(Buffer.from('111'), false);
  p.data(Buffer.from('22'), true);
  assert.deepEqual(sink.events, ['headers ', 'block']);
  p.resume(0);
  assert.deepEqual(sink.events, ['headers ', 'block', 'unblock', 'data 111', 'data 22 eos']);
  assert.deepEqual(seen, ['111', '22']);
});

test('Pipeline waits for a promise and continues when it resolves', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const a: Filter = {
    onRequestHeaders: async (h) => {
      await gate;
      h.set('x', 'async');
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('b'), true);
  assert.deepEqual(sink.events, []);
  release();
  await gate;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sink.events, ['headers async', 'data b eos']);
});

test('Pipeline reports a throwing hook and a rejected promise as filter failures', async () => {
  const sink = recorder();
  new Pipeline([{ onRequestHeaders: () => { throw new Error('sync'); } }], 'request', sink, 10).headers(headers(), true);
  const sink2 = recorder();
  new Pipeline([{ onRequestHeaders: async () => { throw new Error('async'); } }], 'request', sink2, 10).headers(headers(), true);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sink.events, ['failed 0 sync']);
  assert.deepEqual(sink2.events, ['failed 0 async']);
});

test('Pipeline stops iterating at once when the stream halts inside a hook (local reply)', () => {
  const sink = recorder();
  const b: Filter = { onRequestHeaders: () => assert.fail('must not run') };
  const a: Filter = {
    onRequestHeaders: () => {
      sink.halt();
      return 'stop';
    },
  };
  new Pipeline([a, b], 'request', sink, 10).headers(headers(), true);
  assert.deepEqual(sink.events, []);
});

test('Pipeline runs response hooks with the response hook names', () => {
  const seen: string[] = [];
  const f: Filter = {
    onRequestHeaders: () => void seen.push('request'),
    onResponseHeaders: () => void seen.push('response'),
    onResponseBody: () => void seen.push('response body'),
  };
  const sink = recorder();
  const p = new Pipeline([f], 'response', sink, 10);
  p.headers(new HeaderMap([':status', '200']), false);
  p.data(Buffer.from('x'), true);
  assert.deepEqual(seen, ['response', 'response body']);
});

test('Pipeline gives no body to a filter whose header promise is pending, so a body continue cannot bypass the check', async () => {
  let release!: (s: 'continue') => void;
  const bodies: string[] = [];
  const a: Filter = {
    onRequestHeaders: () => new Promise((r) => (release = r)),
    onRequestBody: (c) => {
      bodies.push(c.data.toString());
      return 'continue';
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('payload'), true);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sink.events, [], 'nothing went past the pending check');
  assert.deepEqual(bodies, []);
  release('continue');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sink.events, ['headers ', 'data payload eos']);
  assert.deepEqual(bodies, ['payload']);
});

test('Pipeline passes on the data a stopped filter replaced while it was held', () => {
  let held!: { data: Buffer };
  const a: Filter = {
    onRequestBody: (c) => {
      held = c;
      return 'stop';
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('old'), true);
  held.data = Buffer.from('new');
  p.resume(0);
  assert.deepEqual(sink.events, ['headers ', 'data new eos']);
});

test('Pipeline calls the trailers hook of a filter still buffering at the end, then sends its body and the trailers', () => {
  const seen: string[] = [];
  const a: Filter = {
    onRequestBody: (c, eos) => {
      seen.push(`body ${c.data} ${eos}`);
      return 'stop-and-buffer';
    },
    onRequestTrailers: (t) => {
      seen.push(`trailers ${t.get('t')}`);
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('ab'), false);
  p.data(Buffer.from('cd'), false);
  p.trailers(new HeaderMap(['t', 'end']));
  assert.deepEqual(seen, ['body ab false', 'body abcd false', 'body abcd false', 'trailers end']);
  assert.deepEqual(sink.events, ['headers ', 'data abcd', 'trailers end']);
});

test('Pipeline holds a buffered body and trailers while a trailers hook stops, and resume sends both once', () => {
  let trailerCalls = 0;
  const a: Filter = {
    onRequestBody: () => 'stop-and-buffer',
    onRequestTrailers: () => {
      trailerCalls++;
      return 'stop';
    },
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('xy'), false);
  p.trailers(new HeaderMap(['t', 'v']));
  assert.deepEqual(sink.events, ['headers ']);
  p.resume(0);
  assert.deepEqual(sink.events, ['headers ', 'data xy', 'trailers v']);
  assert.equal(trailerCalls, 1);
});


test('Pipeline: a filter that stopped its headers and buffered the body continues the headers when its trailers hook continues', () => {
  const a: Filter = {
    onRequestHeaders: () => 'stop',
    onRequestBody: () => 'stop-and-buffer',
    onRequestTrailers: () => 'continue',
  };
  const b: Filter = { onRequestHeaders: () => 'continue' };
  const sink = recorder();
  const p = new Pipeline([a, b], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('ab'), false);
  assert.deepEqual(sink.events, []);
  p.trailers(new HeaderMap(['t', 'end']));
  assert.deepEqual(sink.events, ['headers ', 'data ab', 'trailers end']);
});

test('Pipeline: a filter that stopped its headers continues them when the whole body it gets at the trailers continues', () => {
  let calls = 0;
  const a: Filter = {
    onRequestHeaders: () => 'stop',
    onRequestBody: () => (calls++ === 0 ? 'stop-and-buffer' : 'continue'),
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('ab'), false);
  p.trailers(new HeaderMap(['t', 'end']));
  assert.deepEqual(sink.events, ['headers ', 'data ab', 'trailers end']);
});

test('Pipeline resume releases held headers and a body held meanwhile by the same filter', () => {
  let calls = 0;
  const a: Filter = {
    onRequestHeaders: () => 'stop',
    onRequestBody: () => (calls++ === 0 ? 'stop' : 'continue'),
  };
  const sink = recorder();
  const p = new Pipeline([a], 'request', sink, 1024);
  p.headers(headers(), false);
  p.data(Buffer.from('b1'), true);
  assert.deepEqual(sink.events, []);
  p.resume(0);
  assert.deepEqual(sink.events, ['headers ', 'data b1 eos']);
});

test('bodyPassesThrough: only once the headers passed, and only when no filter of the direction looks at bodies or trailers', () => {
  const headersOnly: Filter = { onResponseHeaders: (h) => void h.set('x', '1') };
  const stopper: Filter = { onResponseHeaders: () => 'stop' };
  const bodyReader: Filter = { onResponseBody: () => 'continue' };
  const trailerReader: Filter = { onResponseTrailers: () => 'continue' };
  const requestBodyReader: Filter = { onRequestBody: () => 'continue' };

  const p = new Pipeline([headersOnly, requestBodyReader], 'response', recorder(), 1024);
  assert.equal(p.bodyPassesThrough, false, 'before the headers');
  p.headers(headers(), false);
  assert.equal(p.bodyPassesThrough, true, 'a request body hook does not count on the response');

  const held = new Pipeline([headersOnly, stopper], 'response', recorder(), 1024);
  held.headers(headers(), false);
  assert.equal(held.bodyPassesThrough, false, 'headers held by a filter');
  held.resume();
  assert.equal(held.bodyPassesThrough, true, 'after the filter resumed');

  for (const f of [bodyReader, trailerReader]) {
    const q = new Pipeline([headersOnly, f], 'response', recorder(), 1024);
    q.headers(headers(), false);
    assert.equal(q.bodyPassesThrough, false);
  }
});

test('a filter that buffers gets the body so far with each chunk, joined only when it reads it', () => {
  const seen: BodyChunk[] = [];
  const reads: string[] = [];
  const f: Filter = {
    onRequestBody: (c, eos) => {
      seen.push(c);
      if (seen.length === 2) reads.push(c.data.toString());
      return eos ? 'continue' : 'stop-and-buffer';
    },
  };
  const sink = recorder();
  const p = new Pipeline([f], 'request', sink, 1024);
  p.headers(headers(), false);
  for (const part of ['ab', 'cd', 'ef']) p.data(Buffer.from(part), false);
  p.data(Buffer.from('g'), true);
  assert.deepEqual(reads, ['abcd']);
  assert.deepEqual(sink.events, ['headers ', 'data abcdefg eos']);
  // A chunk handed earlier still holds the body as it was then.
  assert.equal(seen[2].data.toString(), 'abcdef');
  assert.equal(seen[1].data.toString(), 'abcd');
});

test('a buffering filter that replaces the body so far goes on buffering from its replacement', () => {
  const f: Filter = {
    onRequestBody: (c, eos) => {
      if (!eos) c.data = Buffer.from(c.data.toString().toUpperCase());
      return eos ? 'continue' : 'stop-and-buffer';
    },
  };
  const sink = recorder();
  const p = new Pipeline([f], 'request', sink, 8);
  p.headers(headers(), false);
  p.data(Buffer.from('ab'), false);
  p.data(Buffer.from('cd'), false);
  p.data(Buffer.from('e'), true);
  assert.deepEqual(sink.events, ['headers ', 'data ABCDe eos']);
});

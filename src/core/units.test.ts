import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, parseSize, parseAddress } from './units.ts';

test('parseDuration() reads ms, s, m, h and bare numbers', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration(42), 42);
  assert.throws(() => parseDuration('5 seconds'), /Invalid duration "5 seconds"/);
});

test('parseSize() reads binary and decimal units', () => {
  assert.equal(parseSize('1MiB'), 1048576);
  assert.equal(parseSize('64KiB'), 65536);
  assert.equal(parseSize('10KB'), 10000);
  assert.equal(parseSize('12'), 12);
  assert.throws(() => parseSize('1 TB'), /Invalid size "1 TB"/);
});

test('parseAddress() splits IPv4, names and bracketed IPv6', () => {
  assert.deepEqual(parseAddress('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseAddress('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseAddress('api.internal:80'), { host: 'api.internal', port: 80 });
  assert.throws(() => parseAddress('127.0.0.1'), /expected "host:port"/);
  assert.throws(() => parseAddress('a:70000'), /port out of range/);
});

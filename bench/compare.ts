/**
 * Interleaved A/B comparison of weir builds, configs and node flags: what one change costs or saves, with the machine's
 * drift (±2 µs per request between runs minutes apart here) cancelled by measuring every variant in each round,
 * alternating the order. Used for the before/after rows of BENCHMARKS.md.
 *
 * Run: npx node bench/compare.ts [--rounds 5] [--seconds 4] [--connections 64] VARIANT...
 * VARIANT: label=scenario[@path/to/bin/weir.js][+node-flag...], e.g. `base=lua-headers@/tmp/old/bin/weir.js`
 * or `noliftoff=lua-headers+--no-liftoff`; in place of a scenario name, `%filters.json` runs path "/" through the
 * filter chain that JSON file holds (an array in the config's shape). Starts the nginx upstream of ../shared/peers itself; prints figures only.
 */
import { readFileSync } from 'node:fs';
import { machineFacts } from './machine.ts';
import { interleavedRounds, type Target } from './measure.ts';
import { startNginxPeer } from './nginx-peer.ts';
import { median, type Measurement } from './report.ts';
import { scenarios } from './scenarios.ts';
import { startWeir, type WeirProcess } from './weir-proxy.ts';
import { runWrk } from './wrk.ts';

export interface Variant {
  label: string;
  scenario: string;
  bin: string | undefined;
  nodeArgs: string[];
}

/** Parses `label=scenario[@bin][+flag...]`; throws with the expected shape on anything else. */
export function parseVariant(text: string): Variant {
  const match = /^([\w.-]+)=(%[^@+]+|[\w-]+)(?:@([^+]+))?((?:\+[^+]+)*)$/.exec(text);
  if (match === null) throw new Error(`Cannot parse variant "${text}": expected label=scenario[@bin][+node-flag...]`);
  const [, label, scenario, bin, flags] = match;
  if (!scenario.startsWith('%') && !scenarios.some((s) => s.name === scenario)) throw new Error(`Unknown scenario "${scenario}" in variant "${text}"`);
  return { label, scenario, bin, nodeArgs: flags === '' ? [] : flags.slice(1).split('+') };
}

/** The path a variant requests and the filter chain it runs: its scenario's, or the chain in its JSON file. */
export async function variantChain(v: Variant): Promise<{ path: string; filters: readonly object[] }> {
  const scenario = v.scenario.startsWith('%')
    ? { path: '/', weirFilters: async () => JSON.parse(readFileSync(v.scenario.slice(1), 'utf8')) as object[] }
    : scenarios.find((s) => s.name === v.scenario)!;
  const filters = await scenario.weirFilters();
  if (typeof filters === 'string') throw new Error(`${v.label}: ${filters}`);
  return { path: scenario.path, filters };
}

async function main(argv: string[]): Promise<void> {
  let rounds = 5;
  let seconds = 4;
  let connections = 64;
  const variants: Variant[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--seconds') seconds = Number(argv[++i]);
    else if (a === '--connections') connections = Number(argv[++i]);
    else variants.push(parseVariant(a));
  }
  if (variants.length === 0) throw new Error('usage: npx node bench/compare.ts [--rounds N] [--seconds S] label=scenario[@bin][+flag]...');
  const portBase = 18080;
  const peer = await startNginxPeer(portBase);
  const started: { v: Variant; proc: WeirProcess; target: Target }[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      const { path, filters } = await variantChain(v);
      const listenPort = portBase + 200 + 2 * i;
      const proc = await startWeir({
        name: `compare-${v.label}`, listenPort, adminPort: listenPort + 1, upstreamPort: portBase + 920,
        filters, workers: 1, profileDir: null, bin: v.bin, nodeArgs: v.nodeArgs,
      });
      const target: Target = { label: 'weir', rootPid: proc.pid, url: `http://127.0.0.1:${listenPort}${path}` };
      started.push({ v, proc, target });
      await runWrk({ url: target.url, seconds: 2, connections });
    }
    const lists = await interleavedRounds(started.map((s) => s.target), {
      rounds, seconds, connections,
      onRound: (round, latest) => process.stderr.write(`round ${round + 1}/${rounds}: ${started.map((s, i) => `${s.v.label} ${latest[i].cpuPerRequest.toFixed(1)}`).join(', ')}\n`),
    });
    const m = machineFacts(null);
    console.log(`# compare, ${new Date().toISOString()}, ${m.cores} cores, ${m.cpuModel}; ${rounds} rounds of ${seconds}s, wrk -t1 -c${connections}, medians`);
    console.log('| variant | CPU µs/req | user | sys | req/s | p99 µs |');
    console.log('|---|--:|--:|--:|--:|--:|');
    for (const [i, s] of started.entries()) {
      const med = (f: (x: Measurement) => number) => median(lists[i].map(f));
      console.log(`| ${s.v.label} | ${med((x) => x.cpuPerRequest).toFixed(1)} | ${med((x) => x.userPerRequest).toFixed(1)} | ${med((x) => x.systemPerRequest).toFixed(1)} | ${Math.round(med((x) => x.requestsPerSecond))} | ${Math.round(med((x) => x.p99))} |`);
    }
  } finally {
    await Promise.all(started.map((s) => s.proc.stop()));
    await peer.stop();
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`compare: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}

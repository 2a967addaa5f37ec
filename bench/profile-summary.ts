import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

const repoRoot = resolve(import.meta.dirname, '..');

function frameName(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  const url = frame.url.startsWith('file://') ? relative(repoRoot, frame.url.slice('file://'.length)) : frame.url;
  return `${name} ${url}:${frame.lineNumber + 1}`;
}

/** Adds up self time per function over the given profiles in `dir`, idle time left out; µs by function. */
function selfTimes(dir: string, files: readonly string[]): Map<string, number> {
  const totals = new Map<string, number>();
  for (const file of files) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const names = new Map(profile.nodes.map((node) => [node.id, frameName(node.callFrame)]));
    // timeDeltas[i + 1] is the time from sample i to the next one: the time spent where sample i landed.
    for (let i = 0; i + 1 < profile.samples.length; i++) {
      const name = names.get(profile.samples[i]) ?? '(unknown)';
      if (name === '(idle)') continue;
      totals.set(name, (totals.get(name) ?? 0) + profile.timeDeltas[i + 1]);
    }
  }
  return totals;
}

/** Splits busy time into weir's own code, other JavaScript (node internals, dependencies) and native code, GC included. */
function shares(totals: Map<string, number>, busy: number): string {
  const groups = new Map<string, number>([['weir', 0], ['other JS', 0], ['native + GC', 0]]);
  for (const [name, us] of totals) {
    const where = /[ /](src|bin)\/\S+:\d+$/.test(name) && !name.includes('node_modules/') ? 'weir' : / \S+:\d+$/.test(name) ? 'other JS' : 'native + GC';
    groups.set(where, (groups.get(where) ?? 0) + us);
  }
  return [...groups].map(([group, us]) => `${group} ${((us / busy) * 100).toFixed(0)} %`).join(', ');
}

/** Summarises the `--cpu-prof` profiles under `dir` (one folder per run) by the functions with the most self time, as shares of busy time. */
export function summariseProfiles(dir: string, top = 15): string {
  let runs: string[];
  try {
    runs = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  } catch (error) {
    return `No profiles to summarise: ${(error as Error).message}`;
  }
  const out: string[] = [`Where weir's time goes (self time, idle left out, profiles in "${dir}"):`];
  for (const run of runs) {
    const runDir = join(dir, run);
    const files = readdirSync(runDir).filter((file) => file.endsWith('.cpuprofile'));
    if (files.length === 0) continue;
    const totals = selfTimes(runDir, files);
    const busy = [...totals.values()].reduce((sum, us) => sum + us, 0);
    out.push('', `${run} (${(busy / 1e6).toFixed(1)} s busy over ${files.length} thread profiles): ${shares(totals, busy)}`);
    for (const [name, us] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      out.push(`  ${((us / busy) * 100).toFixed(1).padStart(5)} %  ${name}`);
    }
  }
  return out.join('\n');
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (dir === undefined) {
    process.stderr.write('usage: node bench/profile-summary.ts DIR [TOP]\n');
    process.exitCode = 2;
  } else {
    process.stdout.write(`${summariseProfiles(dir, Number(process.argv[3] ?? 15))}\n`);
  }
}

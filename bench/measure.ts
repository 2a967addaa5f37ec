/** One measured wrk run against a proxy, charged the CPU of the proxy's processes (shared by run.ts and compare.ts). */
import { cpuMicroseconds, processTree } from './proc-cpu.ts';
import type { Measurement } from './report.ts';
import { runWrk } from './wrk.ts';

/** A proxy under load: its root pid (the tree below it is measured) and the URL wrk hits. */
export interface Target {
  label: 'weir' | 'nginx';
  rootPid: number;
  url: string;
}

/** Runs one bounded wrk run against the target and charges it the CPU its processes used meanwhile. */
export async function measure(target: Target, seconds: number, connections: number): Promise<Measurement> {
  const pids = processTree(target.rootPid);
  const before = cpuMicroseconds(pids);
  const wrk = await runWrk({ url: target.url, seconds, connections });
  const after = cpuMicroseconds(pids);
  const requests = wrk.requests > 0 ? wrk.requests : Number.NaN;
  const user = (after.user - before.user) / requests;
  const system = (after.system - before.system) / requests;
  return {
    ...wrk, cpuPerRequest: user + system, userPerRequest: user, systemPerRequest: system,
    faultsPerRequest: (after.minorFaults - before.minorFaults) / requests,
    switchesPerRequest: (after.contextSwitches - before.contextSwitches) / requests,
  };
}

/**
 * Measures every target once per round, `rounds` times, alternating the order (forward, then backward), so that
 * drift of the machine during the rounds falls on all of them alike. Returns one list of measurements per target,
 * in the targets' order; `onRound` gets each round's figures as they come.
 */
export async function interleavedRounds(
  targets: readonly Target[],
  options: { rounds: number; seconds: number; connections: number; onRound?: (round: number, latest: Measurement[]) => void },
): Promise<Measurement[][]> {
  const lists: Measurement[][] = targets.map(() => []);
  const indexes = targets.map((_, i) => i);
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? indexes : [...indexes].reverse();
    for (const i of order) lists[i].push(await measure(targets[i], options.seconds, options.connections));
    options.onRound?.(round, lists.map((l) => l.at(-1)!));
  }
  return lists;
}

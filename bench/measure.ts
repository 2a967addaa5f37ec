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

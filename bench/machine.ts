import { readFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';

/** Facts about the machine that a recorded benchmark states beside its figures. */
export interface MachineFacts {
  date: string;
  cores: number;
  cpuModel: string;
  kernel: string;
  node: string;
  nginx: string | null;
}

/** Reads the machine facts now; `nginx` is the peer's version, or null when it did not run. */
export function machineFacts(nginx: string | null): MachineFacts {
  let cpuModel = 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match !== null) cpuModel = match[1].trim();
  } catch {
    // No /proc/cpuinfo: keep "unknown".
  }
  return {
    date: new Date().toISOString(),
    cores: availableParallelism(),
    cpuModel,
    kernel: `Linux ${release()}`,
    node: process.version,
    nginx,
  };
}

import type { Goal } from './scenarios.ts';
import type { IdleResult, SoakResult } from './memory.ts';
import { formatSyscalls, type SyscallCounts } from './syscalls.ts';
import type { WrkResult } from './wrk.ts';

/** One measured wrk run against one proxy, with the proxy's CPU over the run. */
export interface Measurement extends WrkResult {
  /** utime + stime of the proxy's processes during the run, divided by the requests wrk counted, in µs. */
  cpuPerRequest: number;
  /** The user-space part of cpuPerRequest, in µs. */
  userPerRequest: number;
  /** The kernel part of cpuPerRequest (system calls, and on loopback much of TCP itself), in µs. */
  systemPerRequest: number;
  /** Minor page faults per request. */
  faultsPerRequest: number;
  /** Context switches per request, all threads. */
  switchesPerRequest: number;
}

/** The median of each figure over the rounds of one proxy in one scenario. */
export interface Summary {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  cpuPerRequest: number;
  userPerRequest: number;
  systemPerRequest: number;
  faultsPerRequest: number;
  switchesPerRequest: number;
  /** Non-2xx responses and socket errors over all rounds. */
  failures: number;
}

/** What one scenario produced: a summary per proxy that ran, or the reason it did not. */
export interface ScenarioResult {
  name: string;
  peerLabel: string;
  note: string | null;
  goal: Goal | null;
  weir: { rounds: Measurement[]; summary: Summary } | { skipped: string };
  nginx: { rounds: Measurement[]; summary: Summary } | { skipped: string };
  /** System calls per request under strace, per proxy, when `--syscalls` asked for them. */
  syscalls: { weir?: SyscallCounts | string; nginx?: SyscallCounts | string };
}

/** Returns the median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Summarises the rounds of one proxy by the median of each figure. */
export function summarise(rounds: readonly Measurement[]): Summary {
  return {
    requestsPerSecond: median(rounds.map((m) => m.requestsPerSecond)),
    p50: median(rounds.map((m) => m.p50)),
    p99: median(rounds.map((m) => m.p99)),
    cpuPerRequest: median(rounds.map((m) => m.cpuPerRequest)),
    userPerRequest: median(rounds.map((m) => m.userPerRequest)),
    systemPerRequest: median(rounds.map((m) => m.systemPerRequest)),
    faultsPerRequest: median(rounds.map((m) => m.faultsPerRequest)),
    switchesPerRequest: median(rounds.map((m) => m.switchesPerRequest)),
    failures: rounds.reduce((sum, m) => sum + m.non2xx + m.socketErrors, 0),
  };
}

function summaryOf(side: ScenarioResult['weir']): Summary | null {
  return 'summary' in side ? side.summary : null;
}

const formatRate = (value: number): string => Math.round(value).toLocaleString('en-US');
const formatLatency = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${Math.round(us)} µs`);
const formatCpu = (us: number): string => us.toFixed(1);
const formatRatio = (value: number): string => `${value.toFixed(2)}×`;

/** Renders the results as one Markdown table with the weir ÷ nginx ratios. */
export function renderTable(results: readonly ScenarioResult[]): string {
  const lines = [
    '| scenario | peer | req/s weir | req/s peer | p50 weir | p50 peer | p99 weir | p99 peer | p99 ÷ | CPU µs/req weir | CPU µs/req peer | CPU ÷ |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const result of results) {
    const weir = summaryOf(result.weir);
    const peer = summaryOf(result.nginx);
    const cell = (summary: Summary | null, format: (s: Summary) => string): string => (summary === null ? '—' : format(summary));
    const ratio = (pick: (s: Summary) => number): string => (weir === null || peer === null ? '—' : formatRatio(pick(weir) / pick(peer)));
    const failed = (summary: Summary | null): string => (summary !== null && summary.failures > 0 ? ` (${summary.failures} failed)` : '');
    lines.push(`| ${result.name} | ${result.peerLabel} | ${cell(weir, (s) => formatRate(s.requestsPerSecond))}${failed(weir)} | ${cell(peer, (s) => formatRate(s.requestsPerSecond))}${failed(peer)} | ` +
      `${cell(weir, (s) => formatLatency(s.p50))} | ${cell(peer, (s) => formatLatency(s.p50))} | ` +
      `${cell(weir, (s) => formatLatency(s.p99))} | ${cell(peer, (s) => formatLatency(s.p99))} | ${ratio((s) => s.p99)} | ` +
      `${cell(weir, (s) => formatCpu(s.cpuPerRequest))} | ${cell(peer, (s) => formatCpu(s.cpuPerRequest))} | ${ratio((s) => s.cpuPerRequest)} |`);
  }
  return lines.join('\n');
}

/** Renders user and kernel CPU per request of both proxies, one line per scenario that ran. */
export function renderCpuSplit(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const result of results) {
    const parts = (['weir', 'nginx'] as const).flatMap((label) => {
      const summary = summaryOf(result[label]);
      return summary === null ? [] : [`${label} user ${formatCpu(summary.userPerRequest)} + sys ${formatCpu(summary.systemPerRequest)}, ` +
        `${summary.faultsPerRequest.toFixed(2)} faults, ${summary.switchesPerRequest.toFixed(2)} switches`];
    });
    if (parts.length > 0) lines.push(`- ${result.name}: ${parts.join('; ')}`);
  }
  return lines.join('\n');
}

/** Says for each scenario with a goal of issue 5 whether it holds, in one plain line each. */
export function renderVerdicts(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const result of results) {
    if (result.goal === null) continue;
    const weir = summaryOf(result.weir);
    const peer = summaryOf(result.nginx);
    if (weir === null || peer === null) {
      const missing = [weir === null ? 'weir' : null, peer === null ? 'nginx' : null].filter((side) => side !== null);
      lines.push(`- ${result.name}: NOT MEASURED (${missing.join(' and ')} did not run; the notes say why)`);
      continue;
    }
    const cpu = weir.cpuPerRequest / peer.cpuPerRequest;
    const p99 = weir.p99 / peer.p99;
    const verdict = (value: number, limit: number): string => (value <= limit ? 'holds' : 'does NOT hold');
    const failures = weir.failures > 0 ? `; weir had ${weir.failures} failed requests, so the figures are suspect` : '';
    lines.push(`- ${result.name}: CPU per request ${formatRatio(cpu)} ${result.peerLabel} (goal ≤ ${formatRatio(result.goal.cpuRatio)}): ${verdict(cpu, result.goal.cpuRatio)}; ` +
      `p99 ${formatRatio(p99)} (goal ≤ ${formatRatio(result.goal.p99Ratio)}): ${verdict(p99, result.goal.p99Ratio)}${failures}`);
  }
  return lines.join('\n');
}

/** weir's CPU per request in the interleaved budget rounds, by scenario (medians), or why they did not run. */
export type BudgetResult =
  | { rounds: number; seconds: number; medians: { name: string; cpuPerRequest: number; userPerRequest: number }[] }
  | { skipped: string };

/** The per-filter budgets over passthrough: issue 3 (Lua) and issue 4 (Proxy-Wasm), in µs of CPU per request. */
const FILTER_BUDGETS: readonly { scenario: string; issue: number; limit: number }[] = [
  { scenario: 'headers', issue: 0, limit: 0 },
  { scenario: 'lua-headers', issue: 3, limit: 2 },
  { scenario: 'wasm-headers', issue: 4, limit: 3 },
];

/**
 * Says what each header-filter scenario costs over passthrough against the budgets of issues 3 and 4. The built-in
 * headers filter has no budget: it shows the chain's own cost.
 */
export function renderFilterBudgets(budgets: BudgetResult): string {
  if ('skipped' in budgets) return `- NOT MEASURED (${budgets.skipped})`;
  const base = budgets.medians.find((m) => m.name === 'passthrough');
  if (base === undefined) return '- NOT MEASURED (no passthrough round)';
  const lines: string[] = [`- passthrough: ${formatCpu(base.cpuPerRequest)} µs CPU per request (user ${formatCpu(base.userPerRequest)})`];
  for (const budget of FILTER_BUDGETS) {
    const m = budgets.medians.find((x) => x.name === budget.scenario);
    if (m === undefined) continue;
    const over = m.cpuPerRequest - base.cpuPerRequest;
    const user = m.userPerRequest - base.userPerRequest;
    const text = `${formatCpu(m.cpuPerRequest)} µs, ${over >= 0 ? '+' : ''}${formatCpu(over)} over passthrough (user ${user >= 0 ? '+' : ''}${formatCpu(user)})`;
    lines.push(budget.issue === 0
      ? `- ${budget.scenario}: ${text}, the chain's own cost with a built-in filter`
      : `- ${budget.scenario}: ${text} (issue ${budget.issue} goal ≤ ${budget.limit} µs): ${over <= budget.limit ? 'holds' : 'does NOT hold'}`);
  }
  return lines.join('\n');
}

/** Lists the notes and the reasons a proxy was skipped, one line each. */
export function renderNotes(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const result of results) {
    if (result.note !== null) lines.push(`- ${result.name}: ${result.note}`);
    if ('skipped' in result.weir) lines.push(`- ${result.name}: weir not measured: ${result.weir.skipped}`);
    if ('skipped' in result.nginx) lines.push(`- ${result.name}: nginx not measured: ${result.nginx.skipped}`);
  }
  return lines.join('\n');
}

/** Lists the system calls per request of each proxy, for the scenarios where they were counted. */
export function renderSyscalls(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const result of results) {
    for (const label of ['weir', 'nginx'] as const) {
      const counts = result.syscalls[label];
      if (counts !== undefined) lines.push(`- ${result.name} ${label}: ${typeof counts === 'string' ? `not counted: ${counts}` : formatSyscalls(counts)}`);
    }
  }
  return lines.join('\n');
}

/** weir's passthrough with `--workers 2`: its median throughput and CPU per request, or why it did not run. */
export type Workers2Result = { requestsPerSecond: number; cpuPerRequest: number } | { skipped: string };

/** The memory goals of issue 5, each measured or with the reason it was not. */
export interface MemoryResults {
  idle: IdleResult | { skipped: string };
  soak: SoakResult | { skipped: string };
}

/** Renders weir's passthrough throughput with one and with two workers. */
export function renderWorkers(results: readonly ScenarioResult[], workers2: Workers2Result): string {
  const one = results.find((r) => r.name === 'passthrough');
  const oneText = one !== undefined && 'summary' in one.weir
    ? `${formatRate(one.weir.summary.requestsPerSecond)} req/s, ${formatCpu(one.weir.summary.cpuPerRequest)} µs CPU/req`
    : 'not measured';
  const twoText = 'skipped' in workers2
    ? `not measured (${workers2.skipped})`
    : `${formatRate(workers2.requestsPerSecond)} req/s, ${formatCpu(workers2.cpuPerRequest)} µs CPU/req`;
  return [
    'weir passthrough throughput by workers (2 cores shared with wrk -t1 and the nginx upstream, so a second worker has little core left to use):',
    `- --workers 1: ${oneText}`,
    `- --workers 2: ${twoText}`,
  ].join('\n');
}

/** Says whether the memory goals of issue 5 hold, one line each. */
export function renderMemoryVerdicts(memory: MemoryResults): string {
  const lines: string[] = [];
  const { idle, soak } = memory;
  if ('skipped' in idle) lines.push(`- idle keep-alive connections: NOT MEASURED (${idle.skipped})`);
  else {
    lines.push(`- ${formatRate(idle.connections)} idle keep-alive connections: weir's RSS ${idle.rssBeforeMiB.toFixed(1)} → ${idle.rssAfterMiB.toFixed(1)} MiB, ` +
      `+${idle.costMiB.toFixed(1)} MiB (goal ≤ 100 MiB for 10,000): ${idle.connections >= 10000 && idle.costMiB <= 100 ? 'holds' : idle.connections < 10000 ? 'not shown (fewer than 10,000 connections)' : 'does NOT hold'}`);
  }
  if ('skipped' in soak) lines.push(`- RSS over 5 minutes at load: NOT MEASURED (${soak.skipped})`);
  else {
    const within = soak.maxDeviation <= 0.1;
    lines.push(`- RSS over ${soak.seconds}s at load (${formatRate(soak.requestsPerSecond)} req/s, ${soak.failures} failed): ${soak.baselineMiB.toFixed(1)} MiB at ${soak.seconds / 5}s, ` +
      `then ${soak.minMiB.toFixed(1)}–${soak.maxMiB.toFixed(1)} MiB, last ${soak.lastMiB.toFixed(1)} MiB, at most ${(soak.maxDeviation * 100).toFixed(1)} % away ` +
      `(goal ±10 % over 5 minutes): ${soak.seconds < 300 ? `${within ? 'within' : 'outside'} the band, but shorter than 5 minutes` : within ? 'holds' : 'does NOT hold'}`);
  }
  return lines.join('\n');
}

export { formatRate, formatLatency, formatCpu, formatRatio };

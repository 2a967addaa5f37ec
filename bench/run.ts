/**
 * `npm run bench`: weir against the nginx + ngx_lua peer, scenario by scenario, alternating rounds.
 * Prints one Markdown table (requests/s, p50, p99, CPU µs per request, weir ÷ nginx) and says which goals of issue 5 hold.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { machineFacts } from './machine.ts';
import { peerUnavailableReason, startNginxPeer, type NginxPeer } from './nginx-peer.ts';
import { parseOptions, type BenchOptions } from './options.ts';
import { httpGet, portInUse } from './probe.ts';
import { interleavedRounds, measure, type Target } from './measure.ts';
import { processTree } from './proc-cpu.ts';
import { formatRate, median, renderCpuSplit, renderFilterBudgets, renderMemoryVerdicts, type BudgetResult, renderNotes, renderSyscalls, renderTable, renderVerdicts, renderWorkers, summarise,
  type Measurement, type MemoryResults, type ScenarioResult, type Workers2Result } from './report.ts';
import { measureIdleConnections, measureSoak } from './memory.ts';
import { scenarios, type Scenario } from './scenarios.ts';
import { startWeir, weirRevision, weirUnavailableReason, type WeirProcess } from './weir-proxy.ts';
import { runWrk } from './wrk.ts';
import { summariseProfiles } from './profile-summary.ts';
import { countSyscalls, straceUnavailableReason } from './syscalls.ts';

const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

/** Sends one request and checks the response the scenario expects; a problem, or null when it is right. */
async function checkTarget(scenario: Scenario, target: Target): Promise<string | null> {
  try {
    const problem = scenario.check(await httpGet(target.url));
    return problem === null ? null : `its response to "${target.url}" is wrong: ${problem}`;
  } catch (error) {
    return `"${target.url}" did not answer: ${(error as Error).message}`;
  }
}

let peer: NginxPeer | null = null;
let weir: WeirProcess | null = null;

async function cleanUp(): Promise<void> {
  const stopping = [weir?.stop(), peer?.stop()];
  weir = null;
  peer = null;
  await Promise.all(stopping);
}

async function startPeer(options: BenchOptions): Promise<string | null> {
  const reason = peerUnavailableReason();
  if (reason !== null) return reason;
  for (const port of [1, 2, 3, 101, 110, 920].map((offset) => options.portBase + offset)) {
    if (await portInUse('127.0.0.1', port)) return `port 127.0.0.1:${port} is already in use (another bench running? try --port-base)`;
  }
  try {
    peer = await startNginxPeer(options.portBase);
    log(`nginx peer up (${peer.version}): proxy master ${peer.proxyPid}, upstream master ${peer.upstreamPid}`);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

async function runScenario(scenario: Scenario, options: BenchOptions, peerSkip: string | null): Promise<ScenarioResult> {
  const result: ScenarioResult = {
    name: scenario.name, peerLabel: scenario.peerLabel, note: scenario.note, goal: scenario.goal,
    weir: { skipped: 'not run' }, nginx: { skipped: peerSkip ?? 'not run' }, syscalls: {},
  };
  const targets: Target[] = [];
  if (peer !== null) {
    const target: Target = { label: 'nginx', rootPid: peer.proxyPid, url: `http://127.0.0.1:${options.portBase + scenario.nginxOffset}${scenario.path}` };
    const problem = await checkTarget(scenario, target);
    if (problem === null) targets.push(target);
    else result.nginx = { skipped: problem };
  }
  const weirSkip = weirUnavailableReason() ?? (peer === null ? 'it needs the nginx upstream, which did not start' : null);
  const filters = await scenario.weirFilters();
  if (weirSkip !== null) result.weir = { skipped: weirSkip };
  else if (typeof filters === 'string') result.weir = { skipped: filters };
  else {
    const listenPort = options.portBase + 101;
    try {
      weir = await startWeir({
        name: scenario.name, listenPort, adminPort: options.portBase + 110, upstreamPort: options.portBase + 920,
        filters, workers: 1, profileDir: options.profileDir,
      });
      const target: Target = { label: 'weir', rootPid: weir.pid, url: `http://127.0.0.1:${listenPort}${scenario.path}` };
      const problem = await checkTarget(scenario, target);
      if (problem === null) targets.unshift(target);
      else result.weir = { skipped: problem };
    } catch (error) {
      result.weir = { skipped: (error as Error).message };
    }
  }
  for (const target of targets) {
    log(`${scenario.name}: warming up ${target.label} for ${options.warmupSeconds}s`);
    await runWrk({ url: target.url, seconds: options.warmupSeconds, connections: options.connections });
  }
  // Alternating who goes first lets a drift in the machine's load fall on both proxies alike.
  const lists = await interleavedRounds(targets, {
    rounds: options.rounds, seconds: options.durationSeconds, connections: options.connections,
    onRound: (round, latest) => targets.forEach((target, i) => {
      const m = latest[i];
      log(`${scenario.name} round ${round + 1}/${options.rounds} ${target.label}: ${formatRate(m.requestsPerSecond)} req/s, ` +
        `p99 ${Math.round(m.p99)} µs, ${m.cpuPerRequest.toFixed(1)} µs CPU/req${m.non2xx + m.socketErrors > 0 ? `, ${m.non2xx} non-2xx, ${m.socketErrors} socket errors` : ''}`);
    }),
  });
  targets.forEach((target, i) => {
    result[target.label] = { rounds: lists[i], summary: summarise(lists[i]) };
  });
  if (options.syscalls) {
    const reason = straceUnavailableReason();
    for (const target of targets) {
      try {
        if (reason !== null) throw new Error(reason);
        result.syscalls[target.label] = await countSyscalls(processTree(target.rootPid), { url: target.url, seconds: 2, connections: options.connections });
      } catch (error) {
        result.syscalls[target.label] = (error as Error).message;
      }
    }
  }
  await weir?.stop();
  weir = null;
  return result;
}

/** Starts a weir passthrough listener with `workers` workers, warms it up, hands it to `work`, and stops it; a failure becomes the skip reason. */
async function withWeirPassthrough<T>(options: BenchOptions, workers: number, work: (target: Target) => Promise<T>): Promise<T | { skipped: string }> {
  const reason = weirUnavailableReason() ?? (peer === null ? 'it needs the nginx upstream, which did not start' : null);
  if (reason !== null) return { skipped: reason };
  const listenPort = options.portBase + 101;
  try {
    weir = await startWeir({
      name: 'passthrough', listenPort, adminPort: options.portBase + 110, upstreamPort: options.portBase + 920,
      filters: [], workers, profileDir: null,
    });
    const target: Target = { label: 'weir', rootPid: weir.pid, url: `http://127.0.0.1:${listenPort}/` };
    await runWrk({ url: target.url, seconds: options.warmupSeconds, connections: options.connections });
    return await work(target);
  } catch (error) {
    return { skipped: (error as Error).message };
  } finally {
    await weir?.stop();
    weir = null;
  }
}

/** The scenarios of the per-filter budgets, passthrough first: the base the others are compared with. */
const BUDGET_SCENARIOS = ['passthrough', 'headers', 'lua-headers', 'wasm-headers'];
/** Length of one budget round. */
const BUDGET_ROUND_SECONDS = 5;

/**
 * Runs one weir per budget scenario at once (each on its own ports, idle while another is measured) and measures them
 * in turn, round after round, alternating the order: each filter's cost over passthrough then comes from runs minutes
 * apart at most seconds, so the machine's drift, which moves whole scenarios by ±2 µs here, cancels.
 */
async function runBudgetRounds(options: BenchOptions): Promise<BudgetResult> {
  const started: { name: string; proc: WeirProcess; target: Target }[] = [];
  try {
    for (const [i, name] of BUDGET_SCENARIOS.entries()) {
      const scenario = scenarios.find((s) => s.name === name)!;
      const filters = await scenario.weirFilters();
      if (typeof filters === 'string') return { skipped: `${name}: ${filters}` };
      const listenPort = options.portBase + 130 + 2 * i;
      const proc = await startWeir({
        name: `budget-${name}`, listenPort, adminPort: listenPort + 1, upstreamPort: options.portBase + 920,
        filters, workers: 1, profileDir: null,
      });
      const target: Target = { label: 'weir', rootPid: proc.pid, url: `http://127.0.0.1:${listenPort}${scenario.path}` };
      started.push({ name, proc, target });
      const problem = await checkTarget(scenario, target);
      if (problem !== null) return { skipped: `${name}: ${problem}` };
      await runWrk({ url: target.url, seconds: options.warmupSeconds, connections: options.connections });
    }
    const lists = await interleavedRounds(started.map((s) => s.target), {
      rounds: options.budgetRounds, seconds: BUDGET_ROUND_SECONDS, connections: options.connections,
      onRound: (round, latest) => log(`budget round ${round + 1}/${options.budgetRounds}: ${started.map((s, i) => `${s.name} ${latest[i].cpuPerRequest.toFixed(1)}`).join(', ')} µs CPU/req`),
    });
    return {
      rounds: options.budgetRounds, seconds: BUDGET_ROUND_SECONDS,
      medians: started.map((s, i) => ({
        name: s.name, cpuPerRequest: median(lists[i].map((m) => m.cpuPerRequest)), userPerRequest: median(lists[i].map((m) => m.userPerRequest)),
      })),
    };
  } catch (error) {
    return { skipped: (error as Error).message };
  } finally {
    await Promise.all(started.map((s) => s.proc.stop()));
  }
}

/** Measures weir's passthrough throughput with `--workers 2`, to report beside one worker. */
function runWorkers2(options: BenchOptions): Promise<Workers2Result> {
  return withWeirPassthrough(options, 2, async function measureWorkers2(target) {
    const list: Measurement[] = [];
    for (let round = 0; round < options.rounds; round++) list.push(await measure(target, options.durationSeconds, options.connections));
    log(`passthrough --workers 2: ${list.map((m) => formatRate(m.requestsPerSecond)).join(', ')} req/s`);
    return { requestsPerSecond: median(list.map((m) => m.requestsPerSecond)), cpuPerRequest: median(list.map((m) => m.cpuPerRequest)) };
  });
}

/** Measures the memory goals of issue 5 on weir's passthrough: idle keep-alive connections, and RSS over a soak run when asked. */
async function runMemoryGoals(options: BenchOptions): Promise<MemoryResults> {
  const idle = options.idleConnections === 0
    ? { skipped: 'skipped by --idle 0' }
    : await withWeirPassthrough(options, 1, async function holdIdle(target) {
      const result = await measureIdleConnections(target.rootPid, options.portBase + 101, options.idleConnections);
      log(`idle: ${result.connections} connections took weir from ${result.rssBeforeMiB.toFixed(1)} to ${result.rssAfterMiB.toFixed(1)} MiB`);
      return result;
    });
  const soak = options.soakSeconds === 0
    ? { skipped: 'not run: it takes --soak 5m' }
    : await withWeirPassthrough(options, 1, async function soakRun(target) {
      log(`soak: ${options.soakSeconds}s of load on weir passthrough, sampling RSS every 5 s`);
      return measureSoak(target.rootPid, target.url, options.soakSeconds, options.connections);
    });
  return { idle, soak };
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  if (spawnSync('wrk', ['--version']).error !== undefined) {
    process.stderr.write('bench: wrk is not installed (apt-get install -y wrk); nothing can be measured\n');
    return 1;
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => { void cleanUp().then(() => process.exit(130)); });
  }
  const startedAt = new Date().toISOString();
  const peerSkip = await startPeer(options);
  if (peerSkip !== null) log(`nginx peer skipped: ${peerSkip}`);
  const results: ScenarioResult[] = [];
  let workers2: Workers2Result | null = null;
  let memory: MemoryResults | null = null;
  let budgets: BudgetResult | null = null;
  try {
    for (const name of options.scenarios) {
      const scenario = scenarios.find((s) => s.name === name);
      if (scenario !== undefined) results.push(await runScenario(scenario, options, peerSkip));
    }
    if (options.workers2 && options.scenarios.includes('passthrough')) workers2 = await runWorkers2(options);
    if (options.scenarios.includes('passthrough')) memory = await runMemoryGoals(options);
    if (options.budgetRounds > 0 && BUDGET_SCENARIOS.every((name) => options.scenarios.includes(name))) budgets = await runBudgetRounds(options);
  } finally {
    const nginx = peer?.version ?? null;
    await cleanUp();
    const machine = machineFacts(nginx);
    const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim();
    const out: string[] = [
      `# weir bench, ${startedAt} to ${machine.date}`,
      `machine: ${machine.cores} cores, ${machine.cpuModel}, ${machine.kernel}, node ${machine.node}, ${machine.nginx ?? 'nginx not run'}`,
      `load: wrk -t1 -c${options.connections} -d${options.durationSeconds}s keep-alive, ${options.rounds} rounds per proxy alternating, medians; weir --workers 1, nginx 1 worker`,
      `command: ${command}`,
      `weir: ${weirRevision()}`,
      ...(options.profileDir === null ? [] : ['profiled: weir ran under --cpu-prof, so its figures include the profiler\'s cost']),
      '',
      renderTable(results),
      '',
    ];
    if (workers2 !== null) out.push(renderWorkers(results, workers2), '');
    out.push('Goals of issue 5 (weir ÷ peer):', renderVerdicts(results), ...(memory === null ? [] : [renderMemoryVerdicts(memory)]), '');
    if (budgets !== null) {
      out.push(`Filter budgets of issues 3 and 4 (weir alone, the four builds interleaved: ${'rounds' in budgets ? `${budgets.rounds} rounds of ${budgets.seconds}s, medians` : 'not measured'}):`,
        renderFilterBudgets(budgets), '');
    }
    const syscalls = renderSyscalls(results);
    if (syscalls !== '') {
      out.push('System calls per request (2 s of load under strace -f -c: a diagnostic; strace slows the proxy, which changes how many events each epoll wait returns):', syscalls, '');
    }
    out.push('CPU per request split into user and kernel time (µs), with minor page faults and context switches per request (medians):', renderCpuSplit(results), '');
    const notes = renderNotes(results);
    if (notes !== '') out.push('Notes:', notes, '');
    if (options.profileDir !== null) out.push(summariseProfiles(options.profileDir), '');
    process.stdout.write(`${out.join('\n')}\n`);
    if (options.jsonPath !== null) {
      writeFileSync(options.jsonPath, `${JSON.stringify({ machine, command, options, results, workers2, memory, budgets }, null, 2)}\n`);
      log(`results written to "${options.jsonPath}"`);
    }
  }
  return 0;
}

process.exitCode = await main();

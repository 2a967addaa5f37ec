/** Command-line options of `npm run bench`. */
export interface BenchOptions {
  /** Length of one measured wrk run, in seconds. */
  durationSeconds: number;
  /** Length of the unmeasured warm-up run before each proxy's first round of a scenario, in seconds. */
  warmupSeconds: number;
  /** Scenario names to run, in order. */
  scenarios: string[];
  /** Measured runs per proxy per scenario; the report takes the median. */
  rounds: number;
  /** wrk connections (kept open with keep-alive). */
  connections: number;
  /** Where to write the results as JSON, or null. */
  jsonPath: string | null;
  /** Run weir under `--cpu-prof` and summarise the profiles into this directory, or null. */
  profileDir: string | null;
  /** Also measure weir's `--workers 2` throughput on passthrough. */
  workers2: boolean;
  /** After the measured rounds, count each proxy's system calls per request under strace (a diagnostic). */
  syscalls: boolean;
  /** Idle keep-alive connections to hold open against weir while measuring its RSS; 0 skips it. */
  idleConnections: number;
  /** Length of the RSS soak run at load, in seconds; 0 skips it. */
  soakSeconds: number;
  /**
   * Interleaved rounds of weir alone over passthrough and the header-filter scenarios, for the per-filter budgets of
   * issues 3 and 4 (what a filter costs over passthrough, with the machine's drift cancelled); 0 skips them.
   */
  budgetRounds: number;
  /** Base of the port range; nginx's upstream is base + 920, weir listens on base + 101. */
  portBase: number;
}

/** Every scenario the harness knows, in the order the report lists them. */
export const allScenarioNames = [
  'passthrough',
  'passthrough-1k',
  'passthrough-64k',
  'headers',
  'lua-headers',
  'lua-respond',
  'wasm-headers',
];

const usage = `usage: npm run bench -- [--duration 10s] [--warmup 2s] [--rounds 3] [--scenarios a,b]
                        [--connections 64] [--json out.json] [--profile DIR] [--syscalls]
                        [--idle 10000] [--soak 5m] [--no-workers2] [--budget-rounds 5] [--port-base 18080]
scenarios: ${allScenarioNames.join(', ')}
environment: WEIR_BIN=path/to/bin/weir.js benchmarks another build of weir`;

/** Parses a duration such as `10s`, `500ms` or `1m` into seconds; throws on anything else. */
export function parseSeconds(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match === null) throw new Error(`Cannot parse duration "${text}": expected a number with ms, s or m`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  return unit === 'ms' ? value / 1000 : unit === 'm' ? value * 60 : value;
}

/** Parses argv (without node and the script) into options; throws an Error with the usage on a bad flag. */
export function parseOptions(argv: string[]): BenchOptions {
  const options: BenchOptions = {
    durationSeconds: 10,
    warmupSeconds: 2,
    scenarios: [...allScenarioNames],
    rounds: 3,
    connections: 64,
    jsonPath: null,
    profileDir: null,
    workers2: true,
    syscalls: false,
    idleConnections: 10000,
    soakSeconds: 0,
    budgetRounds: 5,
    portBase: 18080,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`Flag "${flag}" needs a value\n${usage}`);
      return next;
    };
    switch (flag) {
      case '--duration': options.durationSeconds = parseSeconds(value()); break;
      case '--warmup': options.warmupSeconds = parseSeconds(value()); break;
      case '--budget-rounds': options.budgetRounds = nonNegativeInteger(flag, value()); break;
      case '--rounds': options.rounds = positiveInteger(flag, value()); break;
      case '--connections': options.connections = positiveInteger(flag, value()); break;
      case '--json': options.jsonPath = value(); break;
      case '--profile': options.profileDir = value(); break;
      case '--no-workers2': options.workers2 = false; break;
      case '--syscalls': options.syscalls = true; break;
      case '--idle': options.idleConnections = nonNegativeInteger(flag, value()); break;
      case '--soak': options.soakSeconds = parseSeconds(value()); break;
      case '--port-base': options.portBase = positiveInteger(flag, value()); break;
      case '--scenarios': options.scenarios = scenarioList(value()); break;
      case '--help': case '-h': throw new Error(usage);
      default: throw new Error(`Unknown flag "${flag}"\n${usage}`);
    }
  }
  if (options.durationSeconds < 1) throw new Error(`Duration "${options.durationSeconds}s" is too short: wrk needs at least 1s`);
  return options;
}

function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`Flag "${flag}" needs a positive integer, got "${text}"`);
  return value;
}

function nonNegativeInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`Flag "${flag}" needs a whole number, got "${text}"`);
  return value;
}

function scenarioList(text: string): string[] {
  const names = text.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const unknown = names.filter((name) => !allScenarioNames.includes(name));
  if (unknown.length > 0) throw new Error(`Unknown scenario "${unknown.join('", "')}"\n${usage}`);
  return names;
}

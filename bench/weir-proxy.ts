import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { waitForHttp } from './probe.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** weir's entry point; WEIR_BIN points the harness at another build (say, a checkout of an older commit). */
const weirBin = process.env.WEIR_BIN ?? join(repoRoot, 'bin', 'weir.js');

/** A running weir process started by the harness. */
export interface WeirProcess {
  pid: number;
  /** Where its stdout and stderr go. */
  logPath: string;
  /** Sends SIGTERM (SIGKILL after 10 s) and waits for the exit, so a `--cpu-prof` profile gets written. */
  stop(): Promise<void>;
}

/** What to start: one listener with the given filters, routed to one cluster with one endpoint. */
export interface WeirStartOptions {
  /** Used in the config's names and the log file's name. */
  name: string;
  listenPort: number;
  adminPort: number;
  upstreamPort: number;
  /** The listener's filter chain, in the config's own shape. */
  filters: readonly object[];
  workers: number;
  /** Directory for `--cpu-prof` output, or null to run without the profiler. */
  profileDir: string | null;
  /** Another build's bin/weir.js to start instead of WEIR_BIN's (bench/compare.ts). */
  bin?: string;
  /** Extra node flags (V8 options, say) put before the entry point. */
  nodeArgs?: readonly string[];
  /** A command that runs node (valgrind and its options, say): node and its arguments follow it. */
  wrapper?: readonly string[];
  /** How long to wait for the listener to answer (default 15 s; a run under valgrind needs minutes). */
  startTimeoutMs?: number;
}

/** Names the build being measured: its bin path and git commit, marked "+ uncommitted changes" when its tree differs from the commit. */
export function weirRevision(): string {
  const dir = dirname(weirBin);
  const git = (...args: string[]): string | null => {
    const run = spawnSync('git', ['-C', dir, ...args], { encoding: 'utf8' });
    return run.status === 0 ? run.stdout.trim() : null;
  };
  const commit = git('rev-parse', '--short', 'HEAD');
  if (commit === null) return weirBin;
  const dirty = (git('status', '--porcelain', '--untracked-files=no') ?? '') !== '';
  return `${weirBin} at ${commit}${dirty ? ' + uncommitted changes' : ''}`;
}

/** Says why weir cannot run yet (no bin/weir.js), or null when it can be started. */
export function weirUnavailableReason(): string | null {
  return existsSync(weirBin) ? null : `weir is not available: "${weirBin}" does not exist yet`;
}

/** Builds weir's config for one bench listener: plain data in the format of issue 2, access log off as in the nginx peer. */
export function weirConfig(options: WeirStartOptions): object {
  return {
    admin: { address: `127.0.0.1:${options.adminPort}` },
    access_log: 'off',
    listeners: [{
      name: options.name,
      address: `127.0.0.1:${options.listenPort}`,
      ...(options.filters.length > 0 ? { filters: options.filters } : {}),
      routes: [{ match: { prefix: '/' }, cluster: 'upstream' }],
    }],
    clusters: [{ name: 'upstream', endpoints: [`127.0.0.1:${options.upstreamPort}`] }],
  };
}

const runDir = mkdtempSync(join(tmpdir(), 'weir-bench-'));

/** Writes the config, starts `node bin/weir.js run <config> --workers N` and resolves once its listener answers; rejects with weir's own words when it exits or never answers. */
export async function startWeir(options: WeirStartOptions): Promise<WeirProcess> {
  const configPath = join(runDir, `${options.name}-w${options.workers}.yaml`);
  const logPath = join(runDir, `${options.name}-w${options.workers}.log`);
  writeFileSync(configPath, stringify(weirConfig(options)));
  const nodeArgs: string[] = [...(options.nodeArgs ?? [])];
  if (options.profileDir !== null) {
    // One folder per run: node names each thread's profile itself, and the summary groups by folder.
    const dir = join(options.profileDir, `${options.name}-w${options.workers}`);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', dir);
  }
  const log = openSync(logPath, 'w');
  const command = [...(options.wrapper ?? []), process.execPath, ...nodeArgs, options.bin ?? weirBin, 'run', configPath, '--workers', String(options.workers)];
  const child: ChildProcess = spawn(command[0], command.slice(1), {
    cwd: repoRoot,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  let exited = false;
  const exit = new Promise<void>((resolvePromise) => child.on('exit', () => { exited = true; resolvePromise(); }));
  const failure = await waitForHttp(`http://127.0.0.1:${options.listenPort}/`, options.startTimeoutMs ?? 15000, () => !exited);
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exit;
    clearTimeout(timer);
  };
  if (failure !== null) {
    await stop();
    const said = readFileSync(logPath, 'utf8').trim().split('\n').slice(-6).join('\n    ');
    throw new Error(`weir did not start with "${configPath}": ${failure}${said === '' ? '' : `; it said:\n    ${said}`}`);
  }
  if (child.pid === undefined) throw new Error('weir started without a pid');
  return { pid: child.pid, logPath, stop };
}

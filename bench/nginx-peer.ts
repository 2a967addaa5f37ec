import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from './proc-cpu.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const luaModule = '/usr/lib/nginx/modules/ngx_http_lua_module.so';

/** The running nginx peer: an upstream and a proxy, each one master with one worker. */
export interface NginxPeer {
  /** Master pid of the proxy (the measured process, with its worker). */
  proxyPid: number;
  /** Master pid of the upstream that both proxies forward to. */
  upstreamPid: number;
  /** Directory holding the generated configs and logs. */
  dir: string;
  /** `nginx -v`, e.g. "nginx/1.26.3". */
  version: string;
  /** Stops both instances and waits until they are gone. */
  stop(): Promise<void>;
}

/** Finds ../shared/peers/nginx/start.sh beside the repo, falling back to /work/shared; null when neither exists. */
export function findPeerScript(): string | null {
  const candidates = [
    resolve(repoRoot, '../shared/peers/nginx/start.sh'),
    '/work/shared/peers/nginx/start.sh',
  ];
  return candidates.find((path) => existsSync(path)) ?? null;
}

/** Says why the peer cannot run here (the script, nginx or ngx_lua missing), or null when it can. */
export function peerUnavailableReason(): string | null {
  if (findPeerScript() === null) return 'the peer script ../shared/peers/nginx/start.sh was not found';
  if (nginxVersion() === null) return 'nginx is not installed (apt-get install -y nginx libnginx-mod-http-lua)';
  if (!existsSync(luaModule)) return `ngx_lua is not installed: "${luaModule}" is missing (apt-get install -y libnginx-mod-http-lua)`;
  return null;
}

/** Returns the installed nginx's version ("nginx/1.26.3"), or null when nginx is not installed. */
export function nginxVersion(): string | null {
  // nginx -v prints its version on stderr.
  const run = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0) return null;
  const match = /nginx\/\S+/.exec(`${run.stderr}${run.stdout}`);
  return match === null ? null : match[0];
}

/** Starts the peer with its ports moved to `portBase` (upstream on portBase + 920); rejects when it does not come up. */
export async function startNginxPeer(portBase: number): Promise<NginxPeer> {
  const script = findPeerScript();
  if (script === null) throw new Error('Cannot start the nginx peer: start.sh was not found');
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-nginx-'));
  // nginx's workers drop root for an unprivileged user, who must be able to read the 64 KiB file in here.
  chmodSync(dir, 0o755);
  const output = await new Promise<string>((resolvePromise, reject) => {
    const child = spawn('bash', [script, dir], {
      env: { ...process.env, PORT_BASE: String(portBase) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) return resolvePromise(stdout);
      const pids = stdout.split('\n').map(Number).filter((pid) => pid > 0);
      for (const pid of pids) tryKill(pid, 'SIGTERM');
      reject(new Error(`Cannot start the nginx peer with "${script}" (exit ${code}): ${stderr.trim()} ${logTail(dir)}`));
    });
  });
  const [upstreamPid, proxyPid] = output.split('\n').map(Number).filter((pid) => pid > 0);
  if (upstreamPid === undefined || proxyPid === undefined) {
    throw new Error(`Cannot start the nginx peer: start.sh printed "${output.trim()}" instead of two pids`);
  }
  return {
    proxyPid,
    upstreamPid,
    dir,
    version: nginxVersion() ?? 'nginx (unknown version)',
    stop: () => stopProcesses([proxyPid, upstreamPid]),
  };
}

function logTail(dir: string): string {
  for (const name of ['proxy-error.log', 'upstream-error.log', 'proxy.out', 'upstream.out']) {
    try {
      const text = readFileSync(join(dir, 'logs', name), 'utf8').trim();
      if (text !== '') return `(${name}: ${text.split('\n').slice(-3).join(' | ')})`;
    } catch {
      // That log was never written; try the next one.
    }
  }
  return '';
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Sends SIGTERM to each pid, then SIGKILL to the process trees still there after 5 s, and waits until all are gone. */
export async function stopProcesses(pids: readonly number[]): Promise<void> {
  const all = pids.flatMap((pid) => processTree(pid));
  for (const pid of pids) tryKill(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (all.some(isRunning) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of all) if (isRunning(pid)) tryKill(pid, 'SIGKILL');
}

/**
 * Starts the real `weir run` command on a config written to a temp folder, as a user would, and waits until
 * it is ready. Listener and admin addresses in the config may use port 0; the ready line says where they went.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/weir.js', import.meta.url));

/** A running weir process. */
export interface Weir {
  /** "http://127.0.0.1:PORT" of a listener. */
  url(listener: string): string;
  /** "http://127.0.0.1:PORT" of the admin API. */
  readonly admin: string;
  readonly dir: string;
  readonly configPath: string;
  readonly process: ChildProcess;
  /** Every stdout and stderr line so far. */
  readonly logs: string[];
  /** Parsed JSON lines of stdout. */
  lines(): Record<string, any>[];
  /** Writes a new config (when given) and POSTs /reload. */
  reload(newYaml?: string): Promise<Response>;
  /** Writes the config file without reloading. */
  writeConfig(yaml: string): void;
  /** Sends SIGTERM and waits for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Waits for a stdout line matching `pred`. */
  waitForLine(pred: (line: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
}

/** Options of startWeir. */
export interface StartOptions {
  workers?: number;
  /** Extra files written next to the config (scripts, modules). */
  files?: Record<string, string | Buffer>;
  env?: Record<string, string>;
  /** Runs in the new folder before the config is written to weir.yaml (through any symlink it makes there). */
  setup?: (dir: string) => void;
}

/** Starts weir. The config gets `admin.address: 127.0.0.1:0` unless it sets one. */
export async function startWeir(yamlText: string, opts: StartOptions = {}): Promise<Weir> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-test-'));
  const configPath = path.join(dir, 'weir.yaml');
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  opts.setup?.(dir);
  const withAdmin = (y: string) => (/^admin:/m.test(y) ? y : `admin:\n  address: 127.0.0.1:0\n${y}`);
  fs.writeFileSync(configPath, withAdmin(yamlText));
  const child = spawn(process.execPath, [BIN, 'run', configPath, '--workers', String(opts.workers ?? 1)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  const logs: string[] = [];
  const parsed: Record<string, any>[] = [];
  const listeners: ((l: Record<string, any>) => void)[] = [];
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  const onText = (stream: NodeJS.ReadableStream, isStdout: boolean) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        if (!isStdout) continue;
        try {
          const obj = JSON.parse(line);
          parsed.push(obj);
          for (const l of listeners.slice()) l(obj);
        } catch {
          // not JSON
        }
      }
    });
  };
  onText(child.stdout!, true);
  onText(child.stderr!, false);
  const waitForLine = (pred: (l: Record<string, any>) => boolean, timeoutMs = 15000) =>
    new Promise<Record<string, any>>((resolve, reject) => {
      const found = parsed.find(pred);
      if (found) return resolve(found);
      const timer = setTimeout(() => {
        listeners.splice(listeners.indexOf(check), 1);
        reject(new Error(`No matching log line within ${timeoutMs}ms; logs:\n${logs.slice(-30).join('\n')}`));
      }, timeoutMs);
      const check = (l: Record<string, any>) => {
        if (!pred(l)) return;
        clearTimeout(timer);
        listeners.splice(listeners.indexOf(check), 1);
        resolve(l);
      };
      listeners.push(check);
    });
  const ready = await Promise.race([
    waitForLine((l) => l.msg === 'weir is ready', 30000),
    exited.then((code) => {
      throw new Error(`weir exited with ${code} before it was ready:\n${logs.join('\n')}`);
    }),
  ]);
  const listenerUrls: Record<string, string> = {};
  for (const [name, addr] of Object.entries(ready.listeners as Record<string, string>)) listenerUrls[name] = `http://${addr}`;
  const weir: Weir = {
    url(name) {
      const u = listenerUrls[name];
      if (u === undefined) throw new Error(`No listener "${name}"; have ${Object.keys(listenerUrls).join(', ')}`);
      return u;
    },
    admin: `http://${ready.admin}`,
    dir,
    configPath,
    process: child,
    logs,
    lines: () => parsed,
    writeConfig(y) {
      fs.writeFileSync(configPath, withAdmin(y).replace(/^admin:\n  address: 127\.0\.0\.1:0\n/, `admin:\n  address: ${ready.admin}\n`));
    },
    async reload(newYaml) {
      if (newYaml !== undefined) weir.writeConfig(newYaml);
      const res = await fetch(`${weir.admin}/reload`, { method: 'POST' });
      const body = await res.clone().json();
      if (body.ok) {
        const line = parsed.filter((l) => l.msg === 'Config reloaded' || l.msg === 'Config loaded').at(-1);
        if (line) for (const [name, addr] of Object.entries(line.listeners as Record<string, string>)) listenerUrls[name] = `http://${addr}`;
      }
      return res;
    },
    async stop() {
      if (exitCode !== undefined) return exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    waitForLine,
  };
  return weir;
}

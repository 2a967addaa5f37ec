/** The watch behind `watch: true`: notices when the config file's text changes, however the change arrives. */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

/** How long events may keep coming before the file is read: one save is often several events. */
const SETTLE_MS = 200;

/** A hash of the text `file` resolves to now, or null while it cannot be read. */
function fingerprint(file: string): string | null {
  try {
    return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch {
    return null;
  }
}

/**
 * Calls `onChange` each time the text of `file` differs from what it was at the previous call (or at the start),
 * within SETTLE_MS of the change. A watch that fails (its folder went away) ends, and `onError` says why. Returns the
 * function that stops watching.
 */
export function watchConfigFile(file: string, onChange: () => void, onError: (err: Error) => void): () => void {
  let last = fingerprint(file);
  let timer: NodeJS.Timeout | null = null;
  const check = function checkConfigFile() {
    timer = null;
    const now = fingerprint(file);
    // Unreadable is a moment within a save (or a swap); the event that ends it comes next.
    if (now === null || now === last) return;
    last = now;
    onChange();
  };
  // The folder, not the file: editors and `sed -i` replace the file, which ends a watch on it. Any name in it counts:
  // a Kubernetes ConfigMap update changes no file of that name, it renames the "..data" symlink the file resolves
  // through. The timer is not pushed back by later events, so a busy neighbour (an access log) cannot delay a reload.
  const watcher = fs.watch(path.dirname(file), () => {
    timer ??= setTimeout(check, SETTLE_MS);
  });
  watcher.on('error', (err) => {
    watcher.close();
    onError(err);
  });
  return function stopWatching() {
    watcher.close();
    if (timer !== null) clearTimeout(timer);
  };
}

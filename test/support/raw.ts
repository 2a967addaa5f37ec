/** Raw TCP exchanges with a listener, for protocol tests that a well-behaved client could not send. */
import net from 'node:net';

/**
 * Sends `data` on a new connection and collects everything the server sends until it closes the
 * connection or `idleMs` pass without data. Resolves with the bytes as latin1 text and whether it closed.
 */
export function rawExchange(url: string, data: string | Buffer | (string | Buffer)[], idleMs = 1000): Promise<{ text: string; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), idleMs);
    };
    socket.on('connect', () => {
      for (const part of Array.isArray(data) ? data : [data]) socket.write(part);
      arm();
    });
    socket.on('data', (d) => {
      chunks.push(d);
      arm();
    });
    socket.on('end', () => done(true));
    socket.on('error', (e) => (chunks.length > 0 ? done(true) : reject(e)));
  });
}

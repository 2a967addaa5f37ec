/**
 * A raw, persistent HTTP/1.1 client connection for conformance tests: it writes exactly the bytes a test
 * gives it and parses the responses strictly (status line, headers, Content-Length, chunked with
 * trailers, or close-delimited), so keep-alive, pipelining and framing can be checked byte for byte.
 */
import net from 'node:net';

/** One parsed response. Header names are lower-cased; `raw` is the head as received. */
export interface RawResponse {
  readonly version: string;
  readonly status: number;
  readonly reason: string;
  readonly headers: [string, string][];
  readonly trailers: [string, string][];
  readonly body: Buffer;
  /** How the body was framed on the wire. */
  readonly framing: 'none' | 'length' | 'chunked' | 'close';
  readonly raw: string;
  /** The first value of a header, or undefined. */
  get(name: string): string | undefined;
}

/** Options of `readResponse`. */
export interface ReadOptions {
  /** The request method (HEAD responses have no body). */
  method?: string;
  /** Return 1xx interim responses instead of skipping them. */
  interim?: boolean;
  /** Give up after this many ms without a complete response (default 10 s). */
  timeoutMs?: number;
}

/** A raw connection to a listener. */
export class RawConnection {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0) as Buffer;
  #ended = false;
  #wake: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#notify();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on('error', () => {
      this.#ended = true;
      this.#notify();
    });
  }

  /** Opens a connection to `url` ("http://127.0.0.1:PORT"). */
  static open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), hostname);
      socket.once('connect', () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** True once the server closed (or reset) the connection. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes received and not consumed by a `read*` call. */
  get pending(): Buffer {
    return this.#buf;
  }

  /** Writes bytes as given (strings as latin1). */
  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Closes the connection. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves true when the server closes the connection within `timeoutMs`, false otherwise. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended) {
      if (!(await this.#more(deadline))) return this.#ended;
    }
    return true;
  }

  /** Reads exactly `n` bytes (or fewer if the connection ends first). */
  async readBytes(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buf.length < n && !this.#ended) {
      if (!(await this.#more(deadline))) break;
    }
    const out = this.#buf.subarray(0, Math.min(n, this.#buf.length));
    this.#buf = this.#buf.subarray(out.length);
    return out;
  }

  /** Reads and parses the next response; rejects on a framing error, a timeout or an early close. */
  async readResponse(opts: ReadOptions = {}): Promise<RawResponse> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      const headEnd = await this.#waitFor(() => this.#buf.indexOf('\r\n\r\n'), deadline, 'a response head');
      const raw = this.#buf.subarray(0, headEnd).toString('latin1');
      this.#buf = this.#buf.subarray(headEnd + 4);
      const lines = raw.split('\r\n');
      const m = /^(HTTP\/1\.[01]) (\d{3}) ?(.*)$/.exec(lines[0]);
      if (m === null) throw new Error(`Malformed status line ${JSON.stringify(lines[0])}`);
      const headers = lines.slice(1).map(parseLine);
      const status = Number(m[2]);
      if (status < 200 && status !== 101 && !opts.interim) continue;
      const get = (name: string) => headers.find((h) => h[0] === name)?.[1];
      let framing: RawResponse['framing'];
      let body: Buffer = Buffer.alloc(0);
      let trailers: [string, string][] = [];
      const te = get('transfer-encoding');
      const cl = get('content-length');
      if (opts.method === 'HEAD' || status === 204 || status === 304 || status < 200) framing = 'none';
      else if (te !== undefined && /chunked/i.test(te)) {
        framing = 'chunked';
        ({ body, trailers } = await this.#readChunked(deadline));
      } else if (cl !== undefined) {
        framing = 'length';
        const n = Number(cl);
        await this.#waitFor(() => (this.#buf.length >= n ? n : -1), deadline, `${n} body bytes`);
        body = this.#buf.subarray(0, n);
        this.#buf = this.#buf.subarray(n);
      } else {
        framing = 'close';
        while (!this.#ended) if (!(await this.#more(deadline))) throw new Error('Timed out waiting for a close-delimited body to end');
        body = this.#buf;
        this.#buf = Buffer.alloc(0);
      }
      return { version: m[1], status, reason: m[3], headers, trailers, body, framing, raw, get };
    }
  }

  async #readChunked(deadline: number): Promise<{ body: Buffer; trailers: [string, string][] }> {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = await this.#waitFor(() => this.#buf.indexOf('\r\n'), deadline, 'a chunk size line');
      const size = parseInt(this.#buf.subarray(0, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error(`Bad chunk size line ${JSON.stringify(this.#buf.subarray(0, eol).toString('latin1'))}`);
      this.#buf = this.#buf.subarray(eol + 2);
      if (size === 0) break;
      await this.#waitFor(() => (this.#buf.length >= size + 2 ? size : -1), deadline, 'a chunk');
      parts.push(this.#buf.subarray(0, size));
      if (this.#buf.subarray(size, size + 2).toString('latin1') !== '\r\n') throw new Error('Chunk not followed by CRLF');
      this.#buf = this.#buf.subarray(size + 2);
    }
    const trailers: [string, string][] = [];
    for (;;) {
      const eol = await this.#waitFor(() => this.#buf.indexOf('\r\n'), deadline, 'a trailer line');
      const line = this.#buf.subarray(0, eol).toString('latin1');
      this.#buf = this.#buf.subarray(eol + 2);
      if (line === '') break;
      trailers.push(parseLine(line));
    }
    return { body: Buffer.concat(parts), trailers };
  }

  /** Waits until `probe()` returns an index >= 0 and returns it. */
  async #waitFor(probe: () => number, deadline: number, what: string): Promise<number> {
    for (;;) {
      const i = probe();
      if (i >= 0) return i;
      if (this.#ended) throw new Error(`Connection closed while waiting for ${what}; unread: ${JSON.stringify(this.#buf.toString('latin1').slice(0, 200))}`);
      if (!(await this.#more(deadline))) throw new Error(`Timed out waiting for ${what}`);
    }
  }

  /** Resolves true when more data (or the end) arrives, false at the deadline. */
  #more(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const ms = deadline - Date.now();
      if (ms <= 0) return resolve(false);
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(false);
      }, ms);
      // One waiter at a time: a caller that overlaps another wakes the earlier one.
      this.#notify();
      this.#wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

function parseLine(line: string): [string, string] {
  const colon = line.indexOf(':');
  if (colon <= 0) throw new Error(`Malformed header line ${JSON.stringify(line)}`);
  return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
}

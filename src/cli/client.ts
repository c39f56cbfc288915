/**
 * The HTTP client of the CLI's client commands: JSON requests with the bearer token,
 * problem+json errors turned into ClientError, and a Server-Sent Events reader that
 * reconnects with Last-Event-ID.
 */

export interface ClientOptions {
  url: string;
  token?: string | undefined;
  /** Per-request deadline for ordinary calls. */
  timeoutMs?: number;
  /**
   * What to tell the user when the server wants a token and none was given (the
   * server's own message names the HTTP header, which a CLI user does not write).
   */
  noTokenHint?: string;
}

export interface ProblemBody {
  code?: string;
  title?: string;
  detail?: string;
  status?: number;
  [k: string]: unknown;
}

/** The server answered with an error, or could not be reached (status 0). */
export class ClientError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly problem?: ProblemBody,
  ) {
    super(message);
    this.name = 'ClientError';
  }

  /**
   * The server was unreachable (connection refused, DNS, timeout) or could not answer
   * (5xx: Redis or Kafka away behind it, a proxy's 502-504): nothing is known about
   * the job, so this must not look like a job's failure.
   */
  get unreachable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

export interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

/** A client command given options it cannot use (the CLI exits 2, as for a usage error). */
export class ClientUsageError extends Error {}

export class ApiClient {
  readonly base: string;

  constructor(private readonly opts: ClientOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    // a URL that cannot work is a usage error, not an unreachable server (exit 69 is retried)
    const url = URL.canParse(this.base) ? new URL(this.base) : undefined;
    if (url?.protocol !== 'http:' && url?.protocol !== 'https:')
      throw new ClientUsageError(
        `the server URL (EXTJOB_URL or --url) must be an http:// or https:// URL, not "${this.base.replace(/\/\/[^/]*@/, '//').slice(0, 200)}"`,
      );
    // the token authenticates; a URL's user:password would only end up in messages
    if (url.username || url.password)
      throw new ClientUsageError(
        'the server URL must not carry user:password@ (give the token with EXTJOB_TOKEN or --token)',
      );
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.opts.token) h.authorization = `Bearer ${this.opts.token}`;
    return h;
  }

  async fetch(
    path: string,
    init: RequestInit = {},
    timeoutMs = this.opts.timeoutMs ?? 30_000,
  ): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        ...init,
        headers: { ...this.headers(), ...(init.headers as Record<string, string> | undefined) },
        signal: init.signal ?? (timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : null),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new ClientError(`cannot reach ${this.base} (${why})`, 0);
    }
    if (res.status >= 400) {
      let problem: ProblemBody | undefined;
      const text = await res.text().catch(() => '');
      try {
        problem = JSON.parse(text) as ProblemBody;
      } catch {}
      let detail = problem?.detail ?? (text.slice(0, 200) || res.statusText);
      if (res.status === 401 && !this.opts.token)
        detail = this.opts.noTokenHint ?? 'no API token: pass --token or set EXTJOB_TOKEN';
      throw new ClientError(`${detail}${problem?.code ? ` (${problem.code})` : ''}`, res.status, problem);
    }
    return res;
  }

  async json<T>(
    path: string,
    init: RequestInit & { body?: never; json?: unknown } = {},
    timeoutMs?: number,
  ): Promise<T> {
    const { json, ...rest } = init;
    const req: RequestInit = { ...rest };
    if (json !== undefined) {
      req.method ??= 'POST';
      req.body = JSON.stringify(json);
      req.headers = {
        ...(rest.headers as Record<string, string> | undefined),
        'content-type': 'application/json',
      };
    }
    const res = await this.fetch(path, req, timeoutMs);
    try {
      return (await res.json()) as T;
    } catch (err) {
      // a proxy's login or maintenance page, another web app, a body cut short: nothing
      // is known about the job (status 0: not a job's failure)
      const type = res.headers.get('content-type') ?? 'no content type';
      throw new ClientError(
        `${this.base}${path} answered ${res.status} without a JSON body (${type}): ${(err as Error).message}`,
        0,
      );
    }
  }

  /**
   * Read a Server-Sent Events stream. Reconnects (with Last-Event-ID) when the
   * connection drops, closes before its `end` event, or stays silent for `idleMs` (the
   * server sends a comment every 15 s: a frozen server or a half-open connection
   * otherwise holds the command for good), up to `retries` times in a row; a
   * connection that carried an event, or bytes for `idleMs`, worked and starts the
   * count again. Stops after an `end` event or when `signal` aborts. An answer that is
   * not an event stream (a proxy's page) is an error at once.
   */
  async *events(
    path: string,
    opts: { lastEventId?: string; signal?: AbortSignal; retries?: number; idleMs?: number } = {},
  ): AsyncGenerator<SseEvent> {
    let last = opts.lastEventId;
    let failures = 0;
    const idleMs = opts.idleMs ?? SSE_IDLE_MS;
    const retries = opts.retries ?? 5;
    for (;;) {
      if (opts.signal?.aborted) return;
      // this connection's watchdog: aborted when nothing arrived for idleMs
      const silent = new AbortController();
      let watchdog = setTimeout(() => silent.abort(), idleMs);
      const opened = Date.now();
      let lastByte = opened;
      const alive = () => {
        lastByte = Date.now();
        clearTimeout(watchdog);
        watchdog = setTimeout(() => silent.abort(), idleMs);
      };
      const signal = opts.signal ? AbortSignal.any([opts.signal, silent.signal]) : silent.signal;
      try {
        let res: Response;
        try {
          res = await this.fetch(
            path,
            {
              headers: {
                accept: 'text/event-stream',
                ...(last !== undefined ? { 'last-event-id': last } : {}),
              },
              signal,
            },
            0,
          );
        } catch (err) {
          if (err instanceof ClientError && !err.unreachable) throw err;
          if (opts.signal?.aborted) return;
          if (++failures > retries)
            throw silent.signal.aborted
              ? new ClientError(`${this.base}${path}: no answer for ${idleMs / 1000} s`, 0)
              : err;
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** failures, 5000)));
          continue;
        }
        alive();
        const type = res.headers.get('content-type') ?? '';
        if (!type.startsWith('text/event-stream')) {
          await res.body?.cancel().catch(() => {});
          throw new ClientError(
            `${this.base}${path} answered ${res.status} with ${type || 'no content type'}, not an event stream`,
            0,
          );
        }
        let events = 0;
        let broke: string;
        try {
          for await (const ev of parseSse(res.body, alive)) {
            events++;
            if (ev.id !== undefined) last = ev.id;
            yield ev;
            if (ev.event === 'end' || ev.event === 'error') return;
          }
          broke = 'the server closed the stream';
        } catch (err) {
          if (opts.signal?.aborted) return;
          broke = silent.signal.aborted ? `nothing arrived for ${idleMs / 1000} s` : (err as Error).message;
        }
        if (events > 0 || lastByte - opened >= idleMs) failures = 0;
        if (++failures > retries) throw new ClientError(`stream broke: ${broke}`, 0);
      } finally {
        clearTimeout(watchdog);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Three of the server's keep-alive periods (15 s) without a byte: the connection is dead. */
const SSE_IDLE_MS = 45_000;

/**
 * Parse an SSE byte stream into events (the WHATWG event-stream format); `received` is
 * called for every piece of it, comments (keep-alives) included.
 */
export async function* parseSse(
  body: ReadableStream<Uint8Array> | null,
  received?: () => void,
): AsyncGenerator<SseEvent> {
  if (!body) return;
  const decoder = new TextDecoder();
  let buf = '';
  let event = '';
  let id: string | undefined;
  let data: string[] = [];
  for await (const part of body as unknown as AsyncIterable<Uint8Array>) {
    received?.();
    buf += decoder.decode(part, { stream: true });
    let nl = buf.search(/\r\n|\r|\n/);
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length > 0 || event) {
          const ev: SseEvent = { event: event || 'message', data: data.join('\n') };
          if (id !== undefined) ev.id = id;
          yield ev;
        }
        event = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let value = c < 0 ? '' : line.slice(c + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id' && !value.includes('\0')) id = value;
      }
      nl = buf.search(/\r\n|\r|\n/);
    }
  }
}

/** Options every client command takes. */
export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const CLIENT_HELP = `Common options:
  --url URL      extjob server (default $EXTJOB_URL or http://127.0.0.1:8080)
  --token T      API token (default $EXTJOB_TOKEN)
  --json         machine-readable JSON output
  -h, --help     this help`;

/** The client for `--url`/`--token` or EXTJOB_URL/EXTJOB_TOKEN. */
export function clientFrom(
  values: { url?: unknown; token?: unknown },
  env = process.env,
  noTokenHint?: string,
): ApiClient {
  const url = (typeof values.url === 'string' && values.url) || env.EXTJOB_URL || 'http://127.0.0.1:8080';
  const token = (typeof values.token === 'string' && values.token) || env.EXTJOB_TOKEN || undefined;
  return new ApiClient({ url, token, noTokenHint });
}

/**
 * A flag's value when it is written as a number (`-3`, or `2.5` unless `integer`);
 * undefined otherwise, for the empty text of an unset shell variable too (which
 * Number() reads as 0: `--exit-code "$RC"` must not report success).
 */
export function flagNumber(v: unknown, integer = true): number | undefined {
  if (typeof v !== 'string') return undefined;
  const text = v.trim();
  return (integer ? /^-?\d+$/ : /^-?\d+(?:\.\d+)?$/).test(text) ? Number(text) : undefined;
}

/** Exit codes of the client commands (SPEC 7). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  unreachable: 69,
  /** --timeout passed before the job finished (the job goes on). */
  waitTimeout: 75,
  expired: 125,
  timedOut: 124,
  canceled: 130,
} as const;

/** Print a client error on stderr; its exit code (69 when the server is unreachable or failing). */
export function reportError(
  command: string,
  err: unknown,
  stderr: NodeJS.WritableStream = process.stderr,
): number {
  if (err instanceof ClientError) {
    stderr.write(`extjob ${command}: ${err.message}\n`);
    return err.unreachable ? EXIT.unreachable : EXIT.failure;
  }
  throw err;
}

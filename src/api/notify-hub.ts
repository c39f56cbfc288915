/**
 * Wake-ups without polling. The broker PUBLISHes one small JSON message per state,
 * progress or log change on the channel `<prefix>:notify`. This hub holds the one
 * subscriber connection of the process and fans each message out in memory to the
 * listeners registered for that job id, so thousands of waiters cost a map entry
 * each and no Redis work. Pub/sub is fire-and-forget: after the subscriber
 * reconnects, every listener is told to re-read ("resync"), since messages sent
 * while it was away are lost.
 */
import type { Redis } from 'ioredis';
import { JOB_STATES, type JobState } from '../broker/types.js';
import type { Logger } from '../shared/logger.js';
import { closeConnection } from '../shared/redis.js';

export interface Notification {
  id: string;
  v: number;
  state: JobState;
  kind: 'state' | 'log' | 'progress' | 'history';
  seq?: number;
}

/** A notification for the job, or 'resync' when messages may have been missed. */
export type Listener = (n: Notification | 'resync') => void;

const STATES = new Set<string>(JOB_STATES);
/** `history`: an entry for an event with no effect (a duplicate, ...) was added. */
const KINDS = new Set<unknown>(['state', 'log', 'progress', 'history']);

export function parseNotification(text: string): Notification | undefined {
  try {
    const m = JSON.parse(text) as Record<string, unknown>;
    if (typeof m.id !== 'string' || typeof m.state !== 'string' || !STATES.has(m.state)) return undefined;
    if (!KINDS.has(m.kind)) return undefined;
    const kind = m.kind as Notification['kind'];
    const n: Notification = { id: m.id, v: Number(m.v) || 0, state: m.state as JobState, kind };
    if (typeof m.seq === 'number') n.seq = m.seq;
    return n;
  } catch {
    return undefined;
  }
}

export class NotifyHub {
  private readonly listeners = new Map<string, Set<Listener>>();
  private wasReady = false;
  private subscribed = false;
  private closed = false;

  /** `subscriber` is a connection of its own: it is put in subscriber mode. */
  constructor(
    private readonly subscriber: Redis,
    readonly channel: string,
    private readonly logger?: Logger,
  ) {
    subscriber.on('message', (ch: string, text: string) => {
      if (ch !== this.channel) return;
      const n = parseNotification(text);
      if (n) this.dispatch(n.id, n);
    });
    subscriber.on('ready', () => {
      if (this.wasReady) {
        this.logger?.info({ waiters: this.size }, 'notification subscriber reconnected; waiters re-read');
        for (const id of [...this.listeners.keys()]) this.dispatch(id, 'resync');
      }
      this.wasReady = true;
    });
  }

  /** Subscribe; resolves once subscribed (ioredis re-subscribes by itself after reconnects). */
  async start(): Promise<void> {
    await this.subscriber.subscribe(this.channel);
    this.subscribed = true;
  }

  /** Call `listener` for every notification about job `id` until the returned function is called. */
  watch(id: string, listener: Listener): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener);
    return () => {
      const s = this.listeners.get(id);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.listeners.delete(id);
    };
  }

  /** Number of registered listeners (all jobs). */
  get size(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  /** Subscriber connection state: waiting is only reliable while it is ready. */
  get ready(): boolean {
    return this.subscribed && this.subscriber.status === 'ready' && !this.closed;
  }

  /** close() was called: no wake-up comes any more. */
  get stopped(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.listeners.keys()]) this.dispatch(id, 'resync');
    this.listeners.clear();
    await closeConnection(this.subscriber);
  }

  private dispatch(id: string, n: Notification | 'resync'): void {
    const set = this.listeners.get(id);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(n);
      } catch (err) {
        this.logger?.error({ err, jobId: id }, 'notification listener failed');
      }
    }
  }
}

/**
 * A one-slot mailbox over a hub subscription: `next()` resolves at the next wake-up
 * (or at once if one arrived since the last call). Several notifications between two
 * reads coalesce into one wake-up carrying the newest: readers re-read state at least
 * that new (reads are shared by version), so none is lost.
 */
export class Wakeups {
  private pending: Notification | 'resync' | undefined;
  private resolve: ((n: Notification | 'resync' | undefined) => void) | undefined;
  private readonly stop: () => void;

  constructor(hub: NotifyHub, id: string, accept: (n: Notification) => boolean = () => true) {
    this.stop = hub.watch(id, (n) => {
      if (n !== 'resync' && !accept(n)) return;
      if (this.resolve) {
        const r = this.resolve;
        this.resolve = undefined;
        r(n);
      } else if (this.pending !== 'resync') this.pending = n; // the newest, or a re-read of all
    });
  }

  /** The next wake-up, or undefined when `ms` passes or `signal` aborts first. */
  next(ms: number, signal?: AbortSignal): Promise<Notification | 'resync' | undefined> {
    if (this.pending !== undefined) {
      const p = this.pending;
      this.pending = undefined;
      return Promise.resolve(p);
    }
    if (signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (n: Notification | 'resync' | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.resolve = undefined;
        resolve(n);
      };
      const onAbort = () => done(undefined);
      const timer = setTimeout(() => done(undefined), Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.resolve = done;
    });
  }

  close(): void {
    this.stop();
    if (this.resolve) this.resolve(undefined);
  }
}

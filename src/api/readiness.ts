/**
 * Readiness: the process serves traffic only while Redis and Kafka both answer and
 * every component that must be up (consumers joined, not shutting down) says so.
 * Each probe runs with a short deadline, so /readyz never hangs on a dead dependency.
 */
export interface Check {
  name: string;
  /** Resolves when healthy; rejects (or returns a reason string) when not. */
  run(): Promise<string | undefined>;
}

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, { ok: boolean; reason?: string }>;
}

export class Readiness {
  private readonly checks: Check[] = [];
  private stopping = false;

  constructor(private readonly timeoutMs = 2000) {}

  add(check: Check): this {
    this.checks.push(check);
    return this;
  }

  /** From now on the process reports not ready (graceful shutdown). */
  markStopping(): void {
    this.stopping = true;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  async report(): Promise<ReadinessReport> {
    const results = await Promise.all(this.checks.map((c) => this.runOne(c)));
    const checks: ReadinessReport['checks'] = {};
    this.checks.forEach((c, i) => {
      checks[c.name] = results[i] ?? { ok: false, reason: 'no result' };
    });
    if (this.stopping) checks.shutdown = { ok: false, reason: 'shutting down' };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }

  private async runOne(check: Check): Promise<{ ok: boolean; reason?: string }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${this.timeoutMs} ms`), this.timeoutMs);
    });
    try {
      const reason = await Promise.race([check.run(), timeout]);
      return reason === undefined ? { ok: true } : { ok: false, reason };
    } catch (err) {
      return { ok: false, reason: (err as Error).message || String(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}

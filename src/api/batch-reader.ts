/**
 * Reads of jobs requested in the same turn of the event loop go to Redis together
 * (JobBroker.getJobs: one round trip), so a burst of wake-ups for many jobs costs one
 * pipeline, not one per job.
 */
import type { Job } from '../broker/types.js';

export type GetJobs = (ids: string[]) => Promise<(Job | undefined)[]>;

export class BatchReader {
  private pending = new Map<
    string,
    { resolve: (j: Job | undefined) => void; reject: (e: unknown) => void }[]
  >();
  private scheduled = false;

  constructor(
    private readonly getJobs: GetJobs,
    private readonly maxBatch = 500,
  ) {}

  read(id: string): Promise<Job | undefined> {
    return new Promise((resolve, reject) => {
      let waiting = this.pending.get(id);
      if (!waiting) {
        waiting = [];
        this.pending.set(id, waiting);
      }
      waiting.push({ resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += this.maxBatch) {
      const slice = ids.slice(i, i + this.maxBatch);
      this.getJobs(slice).then(
        (jobs) => {
          slice.forEach((id, k) => {
            for (const w of batch.get(id) ?? []) w.resolve(jobs[k]);
          });
        },
        (err) => {
          for (const id of slice) for (const w of batch.get(id) ?? []) w.reject(err);
        },
      );
    }
  }
}

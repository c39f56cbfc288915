/**
 * The holes a log stream has passed: seq ranges below the stream's position that it
 * never sent because they were not stored yet. A chunk that fills one later is sent
 * on its own (see streams.ts). Bounded: at most `max` ranges are watched; a hole passed
 * beyond that, or split off past the limit, is only counted (`unwatched`).
 */

/** Holes a log stream watches by default. */
export const WATCHED_HOLES_MAX = 256;

export type SeqRange = [number, number];

export class PassedHoles {
  /** Inclusive seq ranges, ascending and disjoint. */
  private ranges: SeqRange[] = [];
  /**
   * @param unwatched holes passed but not watched so far (carried over when a stream
   *   starts watching afresh)
   */
  constructor(
    public unwatched = 0,
    private readonly max = WATCHED_HOLES_MAX,
  ) {}

  get size(): number {
    return this.ranges.length;
  }

  /** Record a hole the stream moved past; holes are passed in ascending order. */
  passed(lo: number, hi: number): void {
    if (hi < lo) return;
    const last = this.ranges[this.ranges.length - 1];
    if (last && lo <= last[1]) throw new Error(`hole ${lo}-${hi} is not above ${last[0]}-${last[1]}`);
    if (this.ranges.length >= this.max) this.unwatched++;
    else this.ranges.push([lo, hi]);
  }

  /**
   * The watched ranges where some seq is stored now: those not wholly inside one of
   * `gaps` (the log's current holes, ascending and disjoint, as readLog reports them).
   */
  changed(gaps: readonly SeqRange[]): SeqRange[] {
    const out: SeqRange[] = [];
    let g = 0;
    for (const [lo, hi] of this.ranges) {
      while (g < gaps.length && (gaps[g] as SeqRange)[1] < lo) g++;
      const gap = gaps[g];
      if (!gap || gap[0] > lo || gap[1] < hi) out.push([lo, hi]);
    }
    return out;
  }

  /** The seqs of watched range `range` that were sent: the rest stays watched. */
  filled(range: SeqRange, seqs: readonly number[]): void {
    const i = this.ranges.findIndex((r) => r[0] === range[0]);
    const current = this.ranges[i];
    if (!current || seqs.length === 0) return;
    const [lo, hi] = current;
    const parts: SeqRange[] = [];
    let from = lo;
    for (const s of [...seqs].sort((a, b) => a - b)) {
      if (s < from || s > hi) continue;
      if (s > from) parts.push([from, s - 1]);
      from = s + 1;
    }
    if (from <= hi) parts.push([from, hi]);
    this.ranges.splice(i, 1, ...parts);
    while (this.ranges.length > this.max) {
      this.ranges.pop();
      this.unwatched++;
    }
  }
}

/**
 * The log's chunk index (a run of consecutive seqs plus a ZSET of the others): whatever
 * order chunks arrive in, however they are split into calls, a read returns what a
 * plain model of the log holds: every stored seq once, in order, the late ones flagged,
 * and the holes between them as gaps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LogPage } from '../../src/broker/index.js';
import { brokerKeys } from '../../src/broker/keys.js';
import { DEFAULTS, ev, harness } from './harness.js';

interface Model {
  stored: Map<number, { data: string; late: boolean }>;
  /** Every seq sent: stored, or dropped at the log limit (which arrived: no gap). */
  seen: Set<number>;
  bytes: number;
}

const LOG_MAX = 40;

/** Every page from seq 0, `limit` chunks at a time, following nextSeq. */
/** A running job whose chunks `seqs` are stored as the ZSET-only index of older versions stored them. */
async function withOldIndex(h: Awaited<ReturnType<typeof harness>>, id: string, seqs: number[]) {
  const { job } = await h.broker.createJob({ id, name: 'n' });
  await h.broker.applyEvent(ev('accepted', job.id));
  const keys = brokerKeys(h.prefix);
  for (const seq of seqs) {
    await h.redis.hset(keys.log(job.id, 1), String(seq), `old ${seq}`);
    await h.redis.zadd(keys.logSeqs(job.id, 1), seq, String(seq));
  }
  return { job, keys };
}

async function readAll(read: (fromSeq: number) => Promise<LogPage | undefined>) {
  const chunks: { seq: number; data: string; late: boolean }[] = [];
  let from = 0;
  let page: LogPage | undefined;
  for (let i = 0; i < 100; i++) {
    page = await read(from);
    if (!page || page.chunks.length === 0) break;
    for (const c of page.chunks) chunks.push({ seq: c.seq, data: c.data.toString(), late: c.late === true });
    from = page.nextSeq;
  }
  return { chunks, gaps: page?.gaps };
}

function modelGaps(seqs: number[], lastSeq: number | undefined): [number, number][] {
  if (seqs.length === 0) return lastSeq === undefined ? [] : [[0, lastSeq]];
  const gaps: [number, number][] = [];
  for (let i = 1; i < seqs.length; i++)
    if (seqs[i]! > seqs[i - 1]! + 1) gaps.push([seqs[i - 1]! + 1, seqs[i]! - 1]);
  const last = seqs[seqs.length - 1]!;
  if (lastSeq !== undefined && lastSeq > last) gaps.push([last + 1, lastSeq]);
  return gaps;
}

describe('log chunk index', () => {
  it('reads back every stored chunk once, in order, with its late flag and the gaps', async () => {
    const h = await harness({ defaults: { ...DEFAULTS, logMaxBytes: LOG_MAX } });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          // seqs mostly in order, the others anywhere from 0 to 14 (ahead, behind,
          // replays), sent in calls of 1-6 chunks
          fc.array(fc.tuple(fc.nat(24), fc.nat(3)), { minLength: 1, maxLength: 30 }),
          fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 30, maxLength: 30 }),
          fc.array(fc.nat(14), { maxLength: 4 }),
          fc.integer({ min: 1, max: 5 }),
          async (sends, splits, lateSeqs, limit) => {
            const { job } = await h.broker.createJob({ id: `log-${n++}`, name: 'n' });
            const model: Model = { stored: new Map(), seen: new Set(), bytes: 0 };
            const chunkOf = (seq: number, size: number, late: boolean) => {
              const data = `${seq}${'.'.repeat(size)}`;
              model.seen.add(seq);
              if (model.stored.has(seq)) return data;
              if (model.bytes + data.length > LOG_MAX) return data;
              model.bytes += data.length;
              model.stored.set(seq, { data, late });
              return data;
            };
            let next = 0;
            const events = sends.map(([pick, size]) => {
              const seq = pick < 10 ? next : pick - 10;
              next = seq + 1;
              return ev('log', job.id, { seq, chunk: chunkOf(seq, size, false) });
            });
            for (let i = 0, s = 0; i < events.length; i += splits[s++ % splits.length]!)
              await h.broker.applyEvents(events.slice(i, i + splits[s % splits.length]!));
            await h.broker.applyEvent(ev('finished', job.id, { exitCode: 0, lastSeq: 16 }));
            for (const seq of lateSeqs)
              await h.broker.applyEvent(ev('log', job.id, { seq, chunk: chunkOf(seq, 0, true) }));

            const seqs = [...model.stored.keys()].sort((a, b) => a - b);
            const got = await readAll((fromSeq) => h.broker.readLog(job.id, { fromSeq, limit }));
            expect(got.chunks).toEqual(seqs.map((seq) => ({ seq, ...model.stored.get(seq)! })));
            const page = await h.broker.readLog(job.id, { limit: 1000 });
            const gaps = modelGaps(
              [...model.seen].sort((a, b) => a - b),
              16,
            );
            expect(page?.gaps).toEqual(gaps);
            expect(page?.complete).toBe(gaps.length === 0);
          },
        ),
        {
          numRuns: 60,
          // a log with a late chunk dropped at the limit, out of the order of the others
          examples: [
            [
              [
                [0, 1],
                [20, 2],
                [22, 0],
                [0, 1],
                [0, 0],
                [0, 0],
                [0, 2],
                [0, 2],
                [0, 3],
                [0, 3],
                [11, 1],
                [0, 3],
              ],
              Array(30).fill(1),
              [11],
              1,
            ],
          ],
        },
      );
    } finally {
      await h.cleanup();
    }
  });

  it('finds the gaps of a large ZSET, with few holes or holes everywhere', async () => {
    const h = await harness();
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          // up to 3,000 seqs from 0, with runs of holes of a few seqs or none at all
          fc.integer({ min: 1, max: 3000 }),
          fc.array(fc.tuple(fc.nat(2999), fc.integer({ min: 1, max: 80 })), { maxLength: 12 }),
          fc.boolean(),
          async (count, holes, sparse) => {
            const missing = new Set<number>();
            for (const [at, width] of holes) for (let k = 0; k < width; k++) missing.add(at + k);
            const seqs = Array.from({ length: count }, (_, i) => i).filter(
              (s) => !missing.has(s) && (!sparse || s % 3 !== 1),
            );
            const { job } = await h.broker.createJob({ id: `big-${n++}`, name: 'n' });
            const keys = brokerKeys(h.prefix);
            // the ZSET alone, as when seq 0 came last (then nothing is in the run)
            const members = seqs.flatMap((seq) => [seq, String(seq)]);
            for (let i = 0; i < members.length; i += 2000)
              await h.redis.zadd(keys.logSeqs(job.id, 1), ...members.slice(i, i + 2000));
            const page = await h.broker.readLog(job.id, { limit: 1 });
            expect(page?.gaps).toEqual(modelGaps(seqs, undefined));
          },
        ),
        { numRuns: 40 },
      );
    } finally {
      await h.cleanup();
    }
  });

  it('keeps reading a log indexed by an older version, where every seq is in the ZSET', async () => {
    const h = await harness();
    try {
      const { job, keys } = await withOldIndex(h, 'old-index', [0, 1, 2, 3, 4]);
      await h.redis.hset(keys.job(job.id), 'lB', 25);
      const results = await h.broker.applyEvents([
        ev('log', job.id, { seq: 3, chunk: 'again' }),
        ...[5, 6, 8].map((seq) => ev('log', job.id, { seq, chunk: `new ${seq}` })),
      ]);
      expect(results).toEqual(['duplicate', 'applied', 'applied', 'applied']);
      const log = await h.broker.readLog(job.id, { fromSeq: 2, limit: 5 });
      expect(log?.chunks.map((c) => [c.seq, c.data.toString()])).toEqual([
        [2, 'old 2'],
        [3, 'old 3'],
        [4, 'old 4'],
        [5, 'new 5'],
        [6, 'new 6'],
      ]);
      expect(log?.gaps).toEqual([[7, 7]]);
    } finally {
      await h.cleanup();
    }
  });

  it('knows the chunks of an older index when the run was written on top of it', async () => {
    const h = await harness();
    try {
      const { job, keys } = await withOldIndex(h, 'old-and-run', [0, 1, 2, 3, 4, 10]);
      // then 5 stored by a version with the run, which did not read the ZSET's highest seq
      await h.redis.hset(keys.log(job.id, 1), '5', 'run 5', 'r', '5 6 -1');
      const results = await h.broker.applyEvents(
        [10, 4, 6, 10, 5, 7].map((seq) => ev('log', job.id, { seq, chunk: `new ${seq}` })),
      );
      expect(results).toEqual(['duplicate', 'duplicate', 'applied', 'duplicate', 'duplicate', 'applied']);
      const log = await h.broker.readLog(job.id, { fromSeq: 4, limit: 10 });
      expect(log?.chunks.map((c) => [c.seq, c.data.toString()])).toEqual([
        [4, 'old 4'],
        [5, 'run 5'],
        [6, 'new 6'],
        [7, 'new 7'],
        [10, 'old 10'],
      ]);
    } finally {
      await h.cleanup();
    }
  });

  it('costs no ZSET entry for chunks in order, and one for each chunk out of order', async () => {
    const h = await harness();
    try {
      const { job } = await h.broker.createJob({ id: 'in-order', name: 'n' });
      const keys = brokerKeys(h.prefix);
      const zset = keys.logSeqs(job.id, 1);
      await h.broker.applyEvents([0, 1, 2, 3].map((seq) => ev('log', job.id, { seq, chunk: 'x' })));
      expect(await h.redis.zcard(zset)).toBe(0);
      // 6 arrives before 4 and 5; then the run grows over it
      await h.broker.applyEvent(ev('log', job.id, { seq: 6, chunk: 'x' }));
      await h.broker.applyEvents([4, 5, 7].map((seq) => ev('log', job.id, { seq, chunk: 'x' })));
      expect(await h.redis.zrange(zset, 0, -1)).toEqual(['6']);
      expect(await h.redis.hget(keys.log(job.id, 1), 'r')).toBe('0 8 6');
    } finally {
      await h.cleanup();
    }
  });
});

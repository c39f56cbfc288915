import { describe, expect, it } from 'vitest';
import { BatchReader } from '../../src/api/batch-reader.js';
import type { Job } from '../../src/broker/types.js';

const job = (id: string) => ({ id }) as unknown as Job;

describe('BatchReader', () => {
  it('reads the jobs asked for in one turn with one call, each caller getting its own', async () => {
    const calls: string[][] = [];
    const reader = new BatchReader(async (ids) => {
      calls.push(ids);
      return ids.map((id) => (id === 'missing' ? undefined : job(id)));
    });
    const got = await Promise.all(['a', 'b', 'a', 'missing'].map((id) => reader.read(id)));
    expect(got.map((j) => j?.id)).toEqual(['a', 'b', 'a', undefined]);
    expect(calls).toEqual([['a', 'b', 'missing']]);
    await reader.read('c');
    expect(calls).toHaveLength(2);
  });

  it('splits big batches and passes errors to every caller of the batch', async () => {
    const calls: number[] = [];
    const reader = new BatchReader(async (ids) => {
      calls.push(ids.length);
      if (ids.includes('bad')) throw new Error('redis down');
      return ids.map(job);
    }, 2);
    const results = await Promise.allSettled(['a', 'b', 'c', 'bad'].map((id) => reader.read(id)));
    expect(calls).toEqual([2, 2]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
  });
});

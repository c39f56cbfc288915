/**
 * The holes a log stream remembers: which of them the log's current gaps show as
 * filled, what is left after some seqs were sent, and the bound.
 */
import { describe, expect, it } from 'vitest';
import { PassedHoles } from '../../src/api/log-holes.js';

describe('PassedHoles', () => {
  it('reports only the holes that are no longer wholly a gap', () => {
    const h = new PassedHoles();
    h.passed(2, 2);
    h.passed(5, 9);
    h.passed(20, 30);
    // 2 is still missing; 5-9 partly stored (gap 6-9); 20-30 untouched inside a wider gap.
    expect(
      h.changed([
        [2, 2],
        [6, 9],
        [15, 40],
      ]),
    ).toEqual([[5, 9]]);
    expect(
      h.changed([
        [2, 2],
        [5, 9],
        [20, 30],
      ]),
    ).toEqual([]);
    expect(h.changed([])).toEqual([
      [2, 2],
      [5, 9],
      [20, 30],
    ]);
  });

  it('keeps watching what was not sent of a hole', () => {
    const h = new PassedHoles();
    h.passed(5, 9);
    h.filled([5, 9], [7, 5]);
    expect(h.changed([])).toEqual([
      [6, 6],
      [8, 9],
    ]);
    h.filled([6, 6], [6]);
    h.filled([8, 9], [8, 9]);
    expect(h.size).toBe(0);
    expect(h.changed([])).toEqual([]);
  });

  it('watches at most `max` holes and counts the others', () => {
    const h = new PassedHoles(0, 2);
    h.passed(1, 1);
    h.passed(3, 6);
    h.passed(8, 8);
    expect(h.size).toBe(2);
    expect(h.unwatched).toBe(1);
    // Splitting 3-6 into 3 and 5-6 makes three: the highest is dropped and counted.
    h.filled([3, 6], [4]);
    expect(h.changed([])).toEqual([
      [1, 1],
      [3, 3],
    ]);
    expect(h.unwatched).toBe(2);
  });

  it('refuses a hole below one already passed', () => {
    const h = new PassedHoles();
    h.passed(5, 6);
    expect(() => h.passed(2, 3)).toThrow(/not above/);
    h.passed(4, 3); // empty: ignored
    expect(h.size).toBe(1);
  });
});

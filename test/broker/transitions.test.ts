import { describe, expect, it } from 'vitest';
import {
  canTransition,
  legalTransitions,
  luaTransitionTable,
  TRANSITIONS,
} from '../../src/broker/transitions.js';
import { JOB_STATES, TERMINAL_STATES } from '../../src/broker/types.js';

describe('transition table', () => {
  it('has exactly the transitions of SPEC section 3', () => {
    expect(
      legalTransitions()
        .map(([f, t]) => `${f}->${t}`)
        .sort(),
    ).toEqual(
      [
        'none->pending',
        'pending->running',
        'pending->expired',
        'pending->canceled',
        'running->passed',
        'running->failed',
        'running->timed_out',
        'running->canceling',
        'running->pending',
        'canceling->canceled',
      ].sort(),
    );
  });

  it('never leaves a terminal state', () => {
    for (const s of TERMINAL_STATES) for (const to of JOB_STATES) expect(canTransition(s, to)).toBe(false);
  });

  it('covers every state as a source', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual(['none', ...JOB_STATES].sort());
  });

  it('renders the same table for Lua', () => {
    const lua = luaTransitionTable();
    for (const [from, _to] of legalTransitions()) expect(lua).toContain(`["${from}"] = {`);
    const pairs = [...lua.matchAll(/\["(\w+)"\] = \{([^}]*)\}/g)].flatMap(([, from, body]) =>
      [...(body ?? '').matchAll(/\["(\w+)"\] = true/g)].map(([, to]) => `${from}->${to}`),
    );
    expect(pairs.sort()).toEqual(
      legalTransitions()
        .map(([f, t]) => `${f}->${t}`)
        .sort(),
    );
  });
});

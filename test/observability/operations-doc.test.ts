/**
 * docs/operations.md stays in step with the code: every configuration option is
 * documented with its default, no variable is documented that does not exist, every
 * alert has a runbook entry its annotation links to, and every metric the service
 * registers is listed.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { instrumentMetrics } from '../../src/api/metrics.js';
import { httpObservability } from '../../src/api/metrics-http.js';
import { eventTypeLabel } from '../../src/api/metrics-labels.js';
import { OPTIONS } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';

const ROOT = resolve(import.meta.dirname, '../..');
const doc = readFileSync(resolve(ROOT, 'docs/operations.md'), 'utf8');
/** Client-side variables (the CLI's), documented in docs/cli.md and mentioned here. */
const CLIENT_VARS = new Set(['EXTJOB_URL', 'EXTJOB_TOKEN', 'EXTJOB_EVENT_TOKEN']);

/** Rows of the configuration table: variable -> default cell. */
function configRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `(EXTJOB_[A-Z0-9_]+)` \| ([^|]+) \|/gm)) rows.set(m[1]!, m[2]!.trim());
  return rows;
}

describe('docs/operations.md', () => {
  it('documents every option with its default', () => {
    const rows = configRows();
    for (const opt of Object.values(OPTIONS)) {
      expect(rows.has(opt.env), `${opt.env} is documented`).toBe(true);
      expect(rows.get(opt.env), `${opt.env} default`).toBe(
        opt.default === undefined ? 'unset' : `\`${opt.default}\``,
      );
    }
  });

  it('mentions no variable that is not an option', () => {
    const known = new Set(Object.values(OPTIONS).map((o) => o.env));
    const mentioned = new Set([...doc.matchAll(/\bEXTJOB_[A-Z0-9_]+\b/g)].map((m) => m[0]));
    const unknown = [...mentioned].filter((v) => !known.has(v) && !CLIENT_VARS.has(v));
    expect(unknown).toEqual([]);
    expect(configRows().size).toBe(Object.keys(OPTIONS).length);
  });

  it('has a runbook entry for every alert, linked from its annotation', () => {
    const rules = (
      parse(readFileSync(resolve(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as {
        groups: { rules: { alert?: string; annotations?: { runbook?: string } }[] }[];
      }
    ).groups.flatMap((g) => g.rules);
    const headings = new Set([...doc.matchAll(/^### (\S+)$/gm)].map((m) => m[1]!));
    const alerts = rules.filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThan(0);
    for (const r of alerts) {
      expect(headings.has(r.alert!), `runbook heading for ${r.alert}`).toBe(true);
      expect(r.annotations?.runbook).toBe(`docs/operations.md#${r.alert!.toLowerCase()}`);
    }
  });

  it('names the type labels given to events outside the vocabulary', () => {
    // not JSON (no type could be read), and a type extjob does not know
    for (const label of [eventTypeLabel(undefined), eventTypeLabel('com.example.other')])
      expect(doc, label).toMatch(new RegExp(`counts?\\s+as \`${label}\``));
  });

  it('lists every extjob metric the service registers', async () => {
    const registry = new Registry();
    instrumentMetrics(registry, {
      broker: { instrumentation: new EventEmitter(), countsByState: async () => ({}) as never },
    });
    httpObservability(registry, createLogger({ level: 'silent' }));
    const names = (await registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((n) => n.startsWith('extjob_'));
    expect(names.length).toBeGreaterThan(15);
    for (const name of names) expect(doc, name).toContain(`| \`${name}\` |`);
  });
});

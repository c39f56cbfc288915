/**
 * Imports point one way: cli -> api -> consumers -> broker -> shared. A module may
 * import its own layer and the layers below it, never one above.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ORDER = ['shared', 'broker', 'consumers', 'api', 'cli'] as const;
const SRC = resolve(import.meta.dirname, '../src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const layerOf = (file: string) => relative(SRC, file).split('/')[0] as (typeof ORDER)[number];

describe('layering', () => {
  it('has every source file in a known layer', () => {
    for (const f of files(SRC)) expect(ORDER).toContain(layerOf(f));
  });

  it('never imports a layer above', () => {
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const from = layerOf(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]/g)) {
        const target = resolve(file, '..', m[1] ?? '');
        if (!target.startsWith(SRC)) continue;
        const to = layerOf(target);
        if (ORDER.indexOf(to) > ORDER.indexOf(from)) violations.push(`${relative(SRC, file)} -> ${m[1]}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('keeps kafkajs and prom-client behind their seams', () => {
    const seams: Record<string, RegExp> = { kafkajs: /^shared\/kafka\.ts$/, 'prom-client': /^api\// };
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const rel = relative(SRC, file);
      for (const [pkg, allowed] of Object.entries(seams))
        if (new RegExp(`from\\s+['"]${pkg}['"]`).test(readFileSync(file, 'utf8')) && !allowed.test(rel))
          violations.push(`${rel} imports ${pkg}`);
    }
    expect(violations).toEqual([]);
  });
});

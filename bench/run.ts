/**
 * `npm run bench -- <name> [args]` runs bench/<name>.ts (one benchmark at a time: they
 * compare against a baseline measured in the same run, so two at once would disturb
 * both). Without a name, lists the benchmarks with the first line of their header.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const dir = new URL('./', import.meta.url);
const names = readdirSync(dir)
  // helpers, not benchmarks (ingest-load is ingest-latency's executor process)
  .filter(
    (f) =>
      f.endsWith('.ts') && !['run.ts', 'broker-redis.ts', 'ingest-common.ts', 'ingest-load.ts'].includes(f),
  )
  .map((f) => f.slice(0, -3))
  .sort();
const [name, ...args] = process.argv.slice(2);

if (!name || !names.includes(name)) {
  if (name) console.error(`no benchmark "${name}"`);
  console.log('usage: npm run bench -- <name> [args]\n');
  for (const n of names) {
    const header = readFileSync(new URL(`${n}.ts`, dir), 'utf8').match(/\/\*\*\s*\n\s*\*\s*(.+)/);
    console.log(`  ${n.padEnd(20)} ${header?.[1] ?? ''}`);
  }
  process.exit(name ? 2 : 0);
}
const run = spawnSync(process.execPath, ['--import', 'tsx', new URL(`${name}.ts`, dir).pathname, ...args], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);

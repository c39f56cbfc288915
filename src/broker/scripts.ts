/**
 * Loads the Lua scripts once per client (ioredis defineCommand: EVALSHA with a
 * fallback to EVAL). `--@include <name>` inlines includes/<name>.lua and
 * `--@transitions` becomes the transition table generated from transitions.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChainableCommander, Redis } from 'ioredis';
import { luaTransitionTable } from './transitions.js';

export const SCRIPTS = {
  create: 1,
  apply_many: 1,
  fire_timer: 1,
  cancel: 1,
  retention: 1,
  get: 1,
} as const;
export type ScriptName = keyof typeof SCRIPTS;

type Arg = string | number | Buffer;

function luaDir(): string {
  // src/broker/lua next to this file when run from source; the package ships
  // src/broker/lua beside dist/ when compiled.
  const candidates = ['./lua/', '../../../src/broker/lua/'].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
  const dir = candidates.find((d) => existsSync(`${d}create.lua`));
  if (!dir) throw new Error(`Lua scripts not found (looked in ${candidates.join(', ')})`);
  return dir;
}

const cache = new Map<ScriptName, string>();

/** The full source of a script with its includes inlined. */
export function scriptSource(name: ScriptName): string {
  const cached = cache.get(name);
  if (cached) return cached;
  const dir = luaDir();
  const seen = new Set<string>();
  const inline = (src: string): string =>
    src.replace(/^--@include (\w+)\s*$/gm, (_m, inc: string) => {
      if (seen.has(inc)) return '';
      seen.add(inc);
      return inline(readFileSync(`${dir}includes/${inc}.lua`, 'utf8'));
    });
  const src = inline(readFileSync(`${dir}${name}.lua`, 'utf8')).replace(
    '--@transitions',
    luaTransitionTable(),
  );
  cache.set(name, src);
  return src;
}

const commandName = (name: ScriptName) => `extjob_${name}`;
const defined = new WeakSet<Redis>();

export function defineScripts(redis: Redis): void {
  if (defined.has(redis)) return;
  for (const [name, numberOfKeys] of Object.entries(SCRIPTS) as [ScriptName, number][])
    redis.defineCommand(commandName(name), { numberOfKeys, lua: scriptSource(name) });
  defined.add(redis);
}

/** Run a script on a client (one EVALSHA). */
export function runScript(redis: Redis, name: ScriptName, keys: string[], args: Arg[]): Promise<string> {
  defineScripts(redis);
  const fn = (redis as unknown as Record<string, (...a: Arg[]) => Promise<string>>)[commandName(name)];
  if (!fn) throw new Error(`script ${name} not defined`);
  return fn.call(redis, ...keys, ...args);
}

/** Queue a script on a pipeline created from a client that defineScripts was given. */
export function queueScript(
  pipeline: ChainableCommander,
  name: ScriptName,
  keys: string[],
  args: Arg[],
): void {
  const fn = (pipeline as unknown as Record<string, (...a: Arg[]) => ChainableCommander>)[commandName(name)];
  if (!fn) throw new Error(`script ${name} not defined on this pipeline`);
  fn.call(pipeline, ...keys, ...args);
}

/**
 * The Lua scripts (lua/*.lua) as one Redis function library, loaded once per
 * server (FUNCTION LOAD) and called with FCALL. As a library, the shared part
 * (includes/*.lua: key names, transition(), history, outbox) is compiled and
 * its functions created once at load, not on every call as with EVAL, where
 * that prelude cost about a tenth of a transition.
 *
 * Each script file is the body of one function: `--@include <name>` lines are
 * dropped (every include is at library level), `--@transitions` becomes the
 * transition table generated from transitions.ts. The library and function
 * names carry a hash of the source, so two versions of extjob can share a Redis
 * during an upgrade. A server that lost its functions (restart without
 * persistence, FUNCTION FLUSH) gets the library again on the first call that
 * finds it missing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { ExtjobError } from '../shared/errors.js';
import { isRefusedForNow } from '../shared/redis.js';
import { luaTransitionTable } from './transitions.js';

export const SCRIPTS = [
  'create',
  'apply_many',
  'fire_timer',
  'cancel',
  'retention',
  'get',
  'log_ranges',
] as const;
/** Scripts that only read: allowed on replicas and while Redis refuses writes. */
const READ_ONLY: ReadonlySet<string> = new Set(['get', 'log_ranges']);
export type ScriptName = (typeof SCRIPTS)[number];
const INCLUDES = ['job', 'indexes'] as const;

type Arg = string | number | Buffer;

/** One call of a script: its keys and arguments. */
export interface ScriptCall {
  name: ScriptName;
  keys: string[];
  args: Arg[];
}

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

interface Library {
  source: string;
  functionName: (name: ScriptName) => string;
}

let library: Library | undefined;

/** The library: its source and the function name of each script. */
export function scriptLibrary(): Library {
  if (library) return library;
  const dir = luaDir();
  const read = (path: string) => readFileSync(`${dir}${path}`, 'utf8');
  const shared = INCLUDES.map((inc) => read(`includes/${inc}.lua`)).join('\n');
  const bodies = SCRIPTS.map((name) => [name, read(`${name}.lua`).replace(/^--@include \w+\s*$/gm, '')]);
  const hash = createHash('sha1')
    .update(luaTransitionTable())
    .update(shared)
    .update(bodies.flat().join('\0'))
    .digest('hex')
    .slice(0, 12);
  const functionName = (name: ScriptName) => `extjob_${hash}_${name}`;
  const parts = [
    `#!lua name=extjob_${hash}`,
    // set by each registered function before its body runs (functions get them as arguments)
    'local KEYS, ARGV',
    shared.replace('--@transitions', luaTransitionTable()),
  ];
  for (const [name, body] of bodies) {
    const flags = READ_ONLY.has(name as string) ? `, flags = { 'no-writes' }` : '';
    parts.push(
      `local function main_${name}()\n${body}\nend`,
      `redis.register_function{ function_name = '${functionName(name as ScriptName)}', ` +
        `callback = function(k, a) KEYS, ARGV = k, a return main_${name}() end${flags} }`,
    );
  }
  library = { source: parts.join('\n'), functionName };
  return library;
}

const loaded = new WeakMap<Redis, Promise<void>>();

/**
 * Load the library on the server behind this client (once per client, again when
 * lost). A Redis that refuses writes for now (out of memory, a replica) refuses the
 * load too, while it may hold the library already: the calls are then tried as they
 * are (the reads work), and the load is tried again by the next call.
 */
export function loadScripts(redis: Redis, again = false): Promise<void> {
  let p = loaded.get(redis);
  if (!p || again) {
    const loading = redis.function('LOAD', 'REPLACE', scriptLibrary().source).then(
      () => undefined,
      (err: unknown) => {
        if (err instanceof Error && /unknown command/i.test(err.message))
          throw new ExtjobError(
            'EXTJOB_CONFIG_INVALID',
            `Redis at EXTJOB_REDIS_URL does not know FUNCTION: extjob needs Redis 7.0 or later (${err.message})`,
          );
        if (!again && isRefusedForNow(err)) {
          if (loaded.get(redis) === loading) loaded.delete(redis);
          return;
        }
        throw err;
      },
    );
    // a failed load is tried again by the next call
    loading.catch(() => {
      if (loaded.get(redis) === loading) loaded.delete(redis);
    });
    loaded.set(redis, loading);
    p = loading;
  }
  return p;
}

const missing = (err: unknown) => err instanceof Error && /function not found/i.test(err.message);

const fcallArgs = (c: ScriptCall): Arg[] => [
  scriptLibrary().functionName(c.name),
  c.keys.length,
  ...c.keys,
  ...c.args,
];

/** Run a script (one FCALL). */
export async function runScript(
  redis: Redis,
  name: ScriptName,
  keys: string[],
  args: Arg[],
): Promise<unknown> {
  await loadScripts(redis);
  const call = fcallArgs({ name, keys, args });
  const fcall = () => redis.call('FCALL', ...call);
  try {
    return await fcall();
  } catch (err) {
    if (!missing(err)) throw err;
    await loadScripts(redis, true);
    return fcall();
  }
}

/**
 * Run scripts in one pipeline; replies in call order, as pipeline.exec gives them.
 * Calls that found the library missing (they had no effect) run again once it is
 * loaded, in their order.
 */
export async function runScripts(redis: Redis, calls: ScriptCall[]): Promise<[Error | null, unknown][]> {
  if (calls.length === 0) return [];
  await loadScripts(redis);
  const exec = async (batch: ScriptCall[]) => {
    const pipeline = redis.pipeline();
    for (const c of batch) pipeline.call('FCALL', ...fcallArgs(c));
    return ((await pipeline.exec()) ?? []) as [Error | null, unknown][];
  };
  const replies = await exec(calls);
  const again = replies.flatMap(([err], i) => (missing(err) ? [i] : []));
  if (again.length === 0) return replies;
  await loadScripts(redis, true);
  const retried = await exec(again.map((i) => calls[i] as ScriptCall));
  again.forEach((i, n) => {
    replies[i] = retried[n] ?? [new Error('no reply'), null];
  });
  return replies;
}

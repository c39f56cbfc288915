#!/usr/bin/env node
/**
 * The `extjob` command line: parses the command and its flags, runs it, and exits
 * with its code. Errors print one plain line (and their code) on stderr.
 */
import { parseArgs } from 'node:util';
import { isExtjobError } from '../shared/errors.js';
import { ClientUsageError, EXIT } from './client.js';
import { cancel, cancelHelp, cancelOptions } from './commands/cancel.js';
import { create, createHelp, createOptions } from './commands/create.js';
import { dev, devHelp } from './commands/dev.js';
import { emit, emitHelp, emitOptions } from './commands/emit.js';
import { get, getHelp, getOptions } from './commands/get.js';
import { list, listHelp, listOptions } from './commands/list.js';
import { logs, logsHelp, logsOptions } from './commands/logs.js';
import { serve, serveHelp } from './commands/serve.js';
import { wait, waitHelp, waitOptions } from './commands/wait.js';

const usage = `Usage: extjob <command> [options]

Commands:
  dev       start Kafka, Redis and the service locally (development)
  serve     run the service against configured Kafka and Redis
  create    create a job (--wait: and follow it to its end)
  wait      follow a job and exit with its exit code
  emit      report on a job as its executor (accepted, heartbeat, log, finished, canceled)
  get       show a job
  logs      print a job's log (-f: follow it)
  cancel    cancel a job
  list      list jobs

Run 'extjob <command> --help' for a command's options.`;

interface Command {
  help: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

export const commands: Record<string, Command> = {
  dev: { help: devHelp, options: { port: { type: 'string' } }, run: (v) => dev(v as { port?: string }) },
  serve: {
    help: serveHelp,
    options: { role: { type: 'string', multiple: true } },
    run: (v) => serve(v as { role?: string[] }),
  },
  create: { help: createHelp, options: createOptions, run: create },
  wait: { help: waitHelp, options: waitOptions, run: wait },
  emit: { help: emitHelp, options: emitOptions, run: emit },
  get: { help: getHelp, options: getOptions, run: get },
  logs: { help: logsHelp, options: logsOptions, run: logs },
  cancel: { help: cancelHelp, options: cancelOptions, run: cancel },
  list: { help: listHelp, options: listOptions, run: list },
};

/**
 * `--exit-code -1` as `--exit-code=-1`: parseArgs takes a value that starts with a dash
 * for a forgotten one, but a negative number after an option that takes a value is it.
 */
function negativeValuesJoined(args: string[], options: Command['options']): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return [...out, ...args.slice(i)];
    const next = args[i + 1];
    const takesValue = arg.startsWith('--') && options?.[arg.slice(2)]?.type === 'string';
    if (takesValue && next !== undefined && /^-\d+(\.\d+)?$/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage}\n`);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`extjob: unknown command "${name}"\n\n${usage}\n`);
    return 2;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: negativeValuesJoined(rest, command.options),
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`extjob ${name}: ${(err as Error).message}\n\n${command.help}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  return command.run(parsed.values, parsed.positionals);
}

/** Whatever a library left open (a Redis client, timer workers) must not keep a finished command alive. */
const exitSoon = (code: number) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 3000).unref();
};

// The reader of the output went away (`extjob logs ID | head`): stop, as a command that
// a SIGPIPE killed does (128 + 13), with no stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(141);
});
// Whoever read the notes on stderr went away: the command goes on without them (the
// outcome of `wait` is its exit code, which must not turn into a failure).
process.stderr.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

main(process.argv.slice(2)).then(exitSoon, (err) => {
  // a client that cannot be made (the server URL): said plainly, as a usage error
  if (err instanceof ClientUsageError) {
    process.stderr.write(`extjob: ${err.message}\n`);
    return exitSoon(EXIT.usage);
  }
  if (isExtjobError(err)) process.stderr.write(`extjob: ${err.message} (${err.code})\n`);
  else process.stderr.write(`extjob: ${(err as Error)?.stack ?? String(err)}\n`);
  // a service that failed to start must exit, so that its supervisor starts it again
  exitSoon(1);
});

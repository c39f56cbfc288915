#!/usr/bin/env node
/**
 * The `extjob` command line: parses the command and its flags, runs it, and exits
 * with its code. Errors print one plain line (and their code) on stderr.
 */
import { parseArgs } from 'node:util';
import { isExtjobError } from '../shared/errors.js';
import { dev, devHelp } from './commands/dev.js';
import { serve, serveHelp } from './commands/serve.js';

const usage = `Usage: extjob <command> [options]

Commands:
  dev       start Kafka, Redis and the service locally (development)
  serve     run the service against configured Kafka and Redis

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
};

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
      args: rest,
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Whatever a library left open must not keep a finished command alive.
    setTimeout(() => process.exit(code), 3000).unref();
  },
  (err) => {
    if (isExtjobError(err)) process.stderr.write(`extjob: ${err.message} (${err.code})\n`);
    else process.stderr.write(`extjob: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);

import { type Config, loadConfig } from '../../shared/config.js';
import { ExtjobError, isExtjobError } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import { EXIT } from '../client.js';
import { checkHttpPort, startService } from '../service.js';
import { untilSignal } from '../signals.js';

export const serveHelp = `Usage: extjob serve [--role api|consume|schedule]...

Runs the production service against the configured Redis and Kafka (EXTJOB_* environment
variables, see docs/operations.md). --role limits the process to some roles (default all).
Refuses to start without API tokens unless EXTJOB_INSECURE=true.`;

export async function serve(args: { role?: string[] }): Promise<number> {
  const env = { ...process.env };
  const roles = args.role && args.role.length > 0;
  if (roles) env.EXTJOB_ROLES = args.role!.join(',');
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    // the roles came from the flags: a usage error, named as the user gave them
    if (roles && isExtjobError(err) && err.message.includes('EXTJOB_ROLES')) {
      process.stderr.write(`extjob serve: ${err.message.replaceAll('EXTJOB_ROLES', '--role')}\n`);
      return EXIT.usage;
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  if (config.apiTokens.length === 0 && !config.insecure && config.roles.includes('api'))
    throw new ExtjobError(
      'EXTJOB_CONFIG_INVALID',
      'no API tokens configured: set EXTJOB_API_TOKENS or EXTJOB_API_TOKENS_FILE (or EXTJOB_INSECURE=true for development only)',
    );
  if (config.insecure) logger.warn('INSECURE MODE: the API accepts requests without a token');
  if (config.webhookAllowPrivate === true)
    logger.warn('EXTJOB_WEBHOOK_ALLOW_PRIVATE=true: webhooks may go to any address, internal ones included');
  await checkHttpPort(config.httpHost, config.httpPort);
  const service = await startService(config, logger);
  const signal = await untilSignal();
  logger.info({ signal, timeoutSeconds: config.shutdownTimeoutSeconds }, 'shutting down');
  // Bounded: whatever does not finish within the shutdown timeout is abandoned (exit 1).
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    service.close().then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), config.shutdownTimeoutSeconds * 1000);
    }),
  ]).finally(() => clearTimeout(timer));
  if (finished) return 0;
  logger.error(
    { timeoutSeconds: config.shutdownTimeoutSeconds },
    'graceful shutdown did not finish in time; exiting with work abandoned (it is replayed)',
  );
  return 1;
}

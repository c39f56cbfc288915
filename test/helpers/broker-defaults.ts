import type { BrokerDefaults } from '../../src/broker/index.js';
import { brokerDefaults } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';

/**
 * The broker defaults of the tests: production's, with a one-hour retention. No
 * vitest import here, so the tests' child processes use it too.
 */
export const BROKER_DEFAULTS: BrokerDefaults = { ...brokerDefaults(loadConfig({})), retentionSeconds: 3600 };

import type { BrokerDefaults } from '../../src/broker/index.js';

/**
 * The broker defaults of the tests (production values, no heartbeat timeout). No
 * vitest import here, so the tests' child processes use it too.
 */
export const BROKER_DEFAULTS: BrokerDefaults = {
  timeouts: { acceptSeconds: 3600, heartbeatSeconds: 0, runSeconds: 21600, cancelGraceSeconds: 60 },
  retentionSeconds: 3600,
  lateLogGraceSeconds: 300,
  logChunkMaxBytes: 512 * 1024,
  logMaxBytes: 64 * 1024 * 1024,
};

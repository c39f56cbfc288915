/** The broker's public surface. */
export { type BrokerDefaults, JobBroker, type JobBrokerOptions } from './broker.js';
export {
  type BrokerEventMap,
  BrokerInstrumentation,
  NO_EXECUTOR,
  type TimerKind,
} from './instrumentation.js';
export type { ListQuery } from './listing.js';
export type { LogPage, LogQuery } from './logs.js';
export type { OutboxEntry, OutboxType } from './outbox.js';
export { canTransition, legalTransitions, TRANSITIONS } from './transitions.js';
export * from './types.js';

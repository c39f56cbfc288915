/**
 * The Prometheus registry of one process. The broker and consumers never import
 * prom-client: they emit instrumentation events and this module listens.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

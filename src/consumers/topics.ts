/**
 * Topic provisioning at start: create the four topics when missing, and check that
 * existing ones keep extjob's guarantees. A topic that breaks them (compacted, so
 * events or changes are dropped; fewer partitions than configured) is reported loudly
 * but not changed: altering a live topic is an operator's decision.
 */
import { topicNames } from '../shared/config.js';
import { type Admin, ensureTopics, type TopicSpec } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';

/** kafkajs ConfigResourceTypes.TOPIC */
const TOPIC_RESOURCE = 2;

export interface TopicProblem {
  topic: string;
  severity: 'error' | 'warning';
  problem: string;
}

export interface ProvisionOptions {
  prefix: string;
  partitions: number;
  replication: number;
  logger?: Logger;
}

/** The DLQ keeps records longer and accepts the largest event plus our headers. */
export function topicSpecs(o: Pick<ProvisionOptions, 'prefix' | 'partitions' | 'replication'>): TopicSpec[] {
  const t = topicNames(o.prefix);
  const base = { partitions: o.partitions, replication: o.replication };
  const del = { 'cleanup.policy': 'delete' };
  return [
    { topic: t.events, ...base, config: del },
    { topic: t.changes, ...base, config: del },
    { topic: t.commands, ...base, config: del },
    {
      topic: t.dlq,
      ...base,
      config: {
        ...del,
        'retention.ms': String(30 * 24 * 3600 * 1000),
        'max.message.bytes': String(8 * 1024 * 1024),
      },
    },
  ];
}

export async function provisionTopics(
  admin: Admin,
  o: ProvisionOptions,
): Promise<{ created: string[]; problems: TopicProblem[] }> {
  const specs = topicSpecs(o);
  // Creating waits for leaders; a new topic's metadata can lag behind (UNKNOWN_TOPIC_OR_PARTITION,
  // retriable). Trying again is safe: only topics still missing are created.
  const created: string[] = [];
  for (let attempt = 1; ; attempt++) {
    try {
      created.push(...(await ensureTopics(admin, specs)));
      break;
    } catch (err) {
      if (attempt >= 8 || (err as { retriable?: unknown }).retriable !== true) throw err;
      o.logger?.debug({ err, attempt }, 'topic creation not confirmed yet; checking again');
      await new Promise((r) => setTimeout(r, 100 * 2 ** Math.min(attempt, 4)));
    }
  }
  if (created.length > 0) o.logger?.info({ topics: created }, 'created topics');
  const problems = await checkWithRetry(admin, o);
  for (const p of problems)
    o.logger?.[p.severity === 'error' ? 'error' : 'warn']({ topic: p.topic }, p.problem);
  return { created, problems };
}

/**
 * Right after creation a topic's metadata may not have reached every broker yet; the
 * checks are advice, so they are retried briefly and then given up with a warning.
 */
async function checkWithRetry(admin: Admin, o: ProvisionOptions): Promise<TopicProblem[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await checkTopics(admin, o);
    } catch (err) {
      if (attempt >= 8 || (err as { retriable?: unknown }).retriable === false) {
        o.logger?.warn({ err }, 'could not check the topics’ settings');
        return [
          {
            topic: '*',
            severity: 'warning',
            problem: `topic settings not checked: ${(err as Error).message}`,
          },
        ];
      }
      await new Promise((r) => setTimeout(r, 100 * 2 ** Math.min(attempt, 4)));
    }
  }
}

async function checkTopics(admin: Admin, o: ProvisionOptions): Promise<TopicProblem[]> {
  const specs = topicSpecs(o);
  const names = specs.map((s) => s.topic);
  const problems: TopicProblem[] = [];
  const meta = await admin.fetchTopicMetadata({ topics: names });
  for (const spec of specs) {
    const m = meta.topics.find((t) => t.name === spec.topic);
    if (m && m.partitions.length < spec.partitions)
      problems.push({
        topic: spec.topic,
        severity: 'warning',
        problem: `${spec.topic} has ${m.partitions.length} partitions, fewer than the ${spec.partitions} configured: less parallelism (order per job is still kept)`,
      });
  }
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: names.map((name) => ({
      type: TOPIC_RESOURCE,
      name,
      configNames: ['cleanup.policy', 'max.message.bytes'],
    })),
  });
  const config = (topic: string, name: string) =>
    described.resources
      .find((r) => r.resourceName === topic)
      ?.configEntries.find((e) => e.configName === name)?.configValue;
  for (const r of described.resources) {
    const policy = config(r.resourceName, 'cleanup.policy') ?? 'delete';
    if (policy.includes('compact'))
      problems.push({
        topic: r.resourceName,
        severity: 'error',
        problem: `${r.resourceName} has cleanup.policy=${policy}: compaction keeps only the last message per job id and drops the others; set cleanup.policy=delete`,
      });
  }
  // A dead-lettered event is the original record plus our headers: a DLQ that takes
  // no more than the events topic refuses the largest events (they then go without
  // their value).
  const { events, dlq } = topicNames(o.prefix);
  const eventsMax = Number(config(events, 'max.message.bytes'));
  const dlqMax = Number(config(dlq, 'max.message.bytes'));
  if (dlqMax < eventsMax + DLQ_HEADROOM_BYTES)
    problems.push({
      topic: dlq,
      severity: 'warning',
      problem: `${dlq} has max.message.bytes=${dlqMax}, not above ${events}'s ${eventsMax} by ${DLQ_HEADROOM_BYTES}: the largest events would be dead-lettered without their value; raise it to at least ${eventsMax + DLQ_HEADROOM_BYTES}`,
    });
  return problems;
}

/** Room for the DLQ's own headers (the detail alone may take 1 KiB) on top of an event. */
const DLQ_HEADROOM_BYTES = 4096;

/**
 * The kafkajs shapes this folder uses, derived from the types the Kafka seam
 * (src/shared/kafka.ts) exports, so nothing here imports the client library.
 */
import type { Consumer, createKafka, Producer } from '../shared/kafka.js';

export type KafkaClient = ReturnType<typeof createKafka>;
export type ConsumerRunConfig = NonNullable<Parameters<Consumer['run']>[0]>;
export type EachBatchPayload = Parameters<NonNullable<ConsumerRunConfig['eachBatch']>>[0];
export type KafkaBatch = EachBatchPayload['batch'];
export type InMessage = KafkaBatch['messages'][number];
export type ProducerRecord = Parameters<Producer['send']>[0];
export type OutgoingMessage = ProducerRecord['messages'][number];

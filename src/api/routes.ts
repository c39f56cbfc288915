/**
 * The /v1 route table: method, path, required scope, request schemas and documented
 * responses of every route. The router registers exactly these routes and the
 * OpenAPI document is generated from this table, so the two cannot disagree.
 */
import type { z } from 'zod';
import type { Scope } from '../shared/config.js';
import * as s from './schemas.js';

export type Auth = Scope | 'event-token';

export interface ResponseDoc {
  description: string;
  schema?: z.ZodType;
  /** Default application/json. */
  contentType?: string;
  /** Also served as text/plain (Accept: text/plain). */
  plainText?: boolean;
}

export interface RouteDef {
  operationId: string;
  method: 'get' | 'post';
  /** OpenAPI form, e.g. /v1/jobs/{id}. */
  path: string;
  summary: string;
  auth: Auth;
  query: z.ZodObject;
  /** Request headers the route reads, as OpenAPI documents them. */
  headers?: { name: string; description: string; pattern: RegExp }[];
  body?: z.ZodType;
  bodyOptional?: boolean;
  responses: Record<number, ResponseDoc>;
}

const sse = (description: string): ResponseDoc => ({ description, contentType: 'text/event-stream' });

export const ROUTES: RouteDef[] = [
  {
    operationId: 'createJob',
    method: 'post',
    path: '/v1/jobs',
    summary: 'Create a job (idempotent by id).',
    auth: 'jobs:write',
    query: s.emptyQuery,
    headers: [
      {
        name: 'Idempotency-Key',
        description:
          'A random value of the caller (a UUID, say): the same create sent again with it (after a 503 or a lost answer) gets the job and its event token; a job without an id gets one derived from it.',
        pattern: s.IDEMPOTENCY_KEY,
      },
    ],
    body: s.createJobBody,
    responses: {
      201: { description: 'Created; the event token is shown only now.', schema: s.createResponse },
      200: {
        description:
          'A job with this id and the same body exists (with the Idempotency-Key it was created with: and its event token).',
        schema: s.createResponse,
      },
      409: { description: 'A job with this id exists with a different body.' },
    },
  },
  {
    operationId: 'listJobs',
    method: 'get',
    path: '/v1/jobs',
    summary: 'List jobs, newest first, with cursor pagination.',
    auth: 'jobs:read',
    query: s.listQuery,
    responses: { 200: { description: 'A page of jobs.', schema: s.listResponse } },
  },
  {
    operationId: 'getJob',
    method: 'get',
    path: '/v1/jobs/{id}',
    summary: 'One job (without log and history).',
    auth: 'jobs:read',
    query: s.emptyQuery,
    responses: { 200: { description: 'The job.', schema: s.jobSchema } },
  },
  {
    operationId: 'readLog',
    method: 'get',
    path: '/v1/jobs/{id}/log',
    summary: 'Log chunks in order; Accept: text/plain returns the raw text.',
    auth: 'jobs:read',
    query: s.logQuery,
    responses: {
      200: {
        description:
          'Chunks with nextSeq, more, complete and gaps (complete and gaps describe the whole log, not the page); as text/plain, the raw log, all of it unless limit is given, with the headers Extjob-Log-Complete, Extjob-Log-Truncated (when chunks were dropped) and Extjob-Next-Seq (a trailer when the log took more than one page), and Extjob-Log-More: true when a limit left chunks out.',
        schema: s.logResponse,
        plainText: true,
      },
      406: { description: 'Neither application/json nor text/plain is acceptable.' },
    },
  },
  {
    operationId: 'streamLog',
    method: 'get',
    path: '/v1/jobs/{id}/log/stream',
    summary:
      'Live log (SSE): `chunk` events with id = seq (`<attempt>:<seq>` after a retry), `filled` events (no id) for holes filled later, `attempt` when a retry begins a new log, then `end`. Resumable with Last-Event-ID.',
    auth: 'jobs:read',
    query: s.logQuery.pick({ fromSeq: true }),
    responses: { 200: sse('Server-Sent Events.') },
  },
  {
    operationId: 'streamEvents',
    method: 'get',
    path: '/v1/jobs/{id}/events/stream',
    summary:
      'Live history (SSE): `job`, `history` (id = history index), `progress`, then `end`. Resumable with Last-Event-ID.',
    auth: 'jobs:read',
    query: s.emptyQuery,
    responses: { 200: sse('Server-Sent Events.') },
  },
  {
    operationId: 'getHistory',
    method: 'get',
    path: '/v1/jobs/{id}/history',
    summary: 'Transitions and applied events.',
    auth: 'jobs:read',
    query: s.emptyQuery,
    responses: { 200: { description: 'The history.', schema: s.historyResponse } },
  },
  {
    operationId: 'waitJob',
    method: 'get',
    path: '/v1/jobs/{id}/wait',
    summary:
      'Long-poll until the job is terminal (or running); answers with the job, or with the current job when timeoutSeconds pass. Header Extjob-Condition-Met: true|false.',
    auth: 'jobs:read',
    query: s.waitQuery,
    responses: { 200: { description: 'The job.', schema: s.jobSchema } },
  },
  {
    operationId: 'cancelJob',
    method: 'post',
    path: '/v1/jobs/{id}/cancel',
    summary: 'Request a cancel.',
    auth: 'jobs:write',
    query: s.emptyQuery,
    body: s.cancelBody,
    bodyOptional: true,
    responses: {
      202: { description: 'Cancel requested (or the job was already canceled).', schema: s.jobSchema },
      409: { description: 'The job already finished otherwise.' },
    },
  },
  {
    operationId: 'postEvent',
    method: 'post',
    path: '/v1/jobs/{id}/events',
    summary: "One executor event, authenticated with the job's event token; produced to Kafka.",
    auth: 'event-token',
    query: s.emptyQuery,
    body: s.cloudEventBody,
    responses: {
      202: { description: 'Kafka acknowledged the event.', schema: s.acceptedEvent },
      503: { description: 'Kafka is unavailable.' },
    },
  },
  {
    operationId: 'listDeliveries',
    method: 'get',
    path: '/v1/jobs/{id}/deliveries',
    summary: 'Webhook deliveries of the job, including failures kept after the last try.',
    auth: 'jobs:read',
    query: s.emptyQuery,
    responses: { 200: { description: 'Deliveries, newest first.', schema: s.deliveriesResponse } },
  },
];

/** /v1/jobs/{id} -> /v1/jobs/:id */
export const expressPath = (p: string): string => p.replace(/\{(\w+)\}/g, ':$1');

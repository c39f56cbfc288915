/**
 * GET /openapi.json: OpenAPI 3.1, generated from the route table and the zod
 * schemas the server validates with (z.toJSONSchema), so it says what the server does.
 */
import { z } from 'zod';
import { ROUTES } from './routes.js';
import { jobId, problemSchema } from './schemas.js';

type Json = Record<string, unknown>;

const PROBLEM_REF = { $ref: '#/components/schemas/Problem' };

export function buildOpenApi(version = '0.1.0'): Json {
  const components: Record<string, unknown> = {};
  const paths: Record<string, Record<string, unknown>> = {};

  /** JSON Schema of `schema`; named schemas (meta id) go to components and are referenced. */
  const schemaOf = (schema: z.ZodType, io: 'input' | 'output'): Json => {
    const out = z.toJSONSchema(schema, {
      io,
      target: 'draft-2020-12',
      unrepresentable: 'any',
      override: (ctx) => {
        delete (ctx.jsonSchema as Json).$schema;
      },
    }) as Json;
    const defs = (out.$defs ?? {}) as Record<string, Json>;
    delete out.$defs;
    delete out.$schema;
    const relink = (v: unknown): Json =>
      JSON.parse(JSON.stringify(v).replaceAll('"#/$defs/', '"#/components/schemas/')) as Json;
    for (const [name, def] of Object.entries(defs)) components[name] ??= relink(def);
    return relink(out);
  };

  for (const r of ROUTES) {
    const params: Json[] = [];
    if (r.path.includes('{id}'))
      params.push({ name: 'id', in: 'path', required: true, schema: schemaOf(jobId, 'input') });
    // a query's values arrive as text; documented as what they must parse to (integers
    // with their bounds), which is how clients send them
    const q = schemaOf(r.query, 'output');
    const props = (q.properties ?? {}) as Record<string, Json>;
    const required = new Set((q.required ?? []) as string[]);
    for (const [name, schema] of Object.entries(props)) {
      const { description, ...rest } = schema;
      params.push({
        name,
        in: 'query',
        required: required.has(name),
        schema: rest,
        ...(description ? { description } : {}),
      });
    }
    for (const h of r.headers ?? [])
      params.push({
        name: h.name,
        in: 'header',
        required: false,
        schema: { type: 'string', pattern: h.pattern.source },
        description: h.description,
      });
    const responses: Json = {};
    for (const [status, doc] of Object.entries(r.responses)) {
      const ct = doc.contentType ?? 'application/json';
      const text = doc.plainText ? { 'text/plain': { schema: { type: 'string' } } } : {};
      responses[status] = {
        description: doc.description,
        ...(doc.schema
          ? { content: { [ct]: { schema: schemaOf(doc.schema, 'output') }, ...text } }
          : Number(status) < 400 && ct !== 'application/json'
            ? { content: { [ct]: { schema: { type: 'string' } } } }
            : Number(status) >= 400
              ? { content: { 'application/problem+json': { schema: PROBLEM_REF } } }
              : {}),
      };
    }
    for (const status of ['400', '401', '403', '404', '503'])
      if (!(status in responses) && !(status === '404' && !r.path.includes('{id}')))
        responses[status] = { $ref: `#/components/responses/E${status}` };
    if (r.body) responses['413'] ??= { $ref: '#/components/responses/E413' };
    if (r.body) responses['415'] ??= { $ref: '#/components/responses/E415' };
    const op: Json = {
      operationId: r.operationId,
      summary: r.summary,
      parameters: params,
      responses,
      security:
        r.auth === 'event-token' ? [{ eventToken: [] }, { apiToken: ['admin'] }] : [{ apiToken: [r.auth] }],
    };
    if (r.body)
      op.requestBody = {
        required: !r.bodyOptional,
        content: { 'application/json': { schema: schemaOf(r.body, 'input') } },
      };
    paths[r.path] ??= {};
    paths[r.path]![r.method] = op;
  }

  schemaOf(problemSchema, 'output');
  const problemResponse = (description: string) => ({
    description,
    content: { 'application/problem+json': { schema: PROBLEM_REF } },
  });
  const probe = (operationId: string, summary: string) => ({
    get: { operationId, summary, security: [], responses: { 200: { description: 'OK' } } },
  });

  return {
    openapi: '3.1.0',
    info: {
      title: 'extjob',
      version,
      description: 'External jobs: created by pipelines, run by other systems, reported through events.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    paths: {
      ...paths,
      '/healthz': probe('healthz', 'The process is alive.'),
      '/readyz': {
        get: {
          operationId: 'readyz',
          summary: 'Redis and Kafka reachable, consumers joined.',
          security: [],
          responses: { 200: { description: 'Ready.' }, 503: { description: 'Not ready.' } },
        },
      },
      '/metrics': probe('metrics', 'Prometheus text format.'),
      '/openapi.json': probe('openapi', 'This document.'),
    },
    components: {
      schemas: components,
      responses: {
        E400: problemResponse('Invalid request (EXTJOB_VALIDATION_FAILED).'),
        E401: problemResponse('Missing or invalid token (EXTJOB_UNAUTHORIZED).'),
        E403: problemResponse('The token lacks the scope (EXTJOB_FORBIDDEN).'),
        E404: problemResponse('No such job (EXTJOB_JOB_NOT_FOUND).'),
        E413: problemResponse('Body over 1 MiB (EXTJOB_PAYLOAD_TOO_LARGE).'),
        E415: problemResponse('Not JSON (EXTJOB_UNSUPPORTED_MEDIA_TYPE).'),
        E503: problemResponse('Redis or Kafka unavailable; retriable.'),
      },
      securitySchemes: {
        apiToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'API token with scopes jobs:read, jobs:write or admin.',
        },
        eventToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'The event token returned when the job was created.',
        },
      },
    },
  };
}

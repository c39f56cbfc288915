/**
 * Requests Node's HTTP parser refuses before any route sees them are answered as
 * problem documents too (docs/api.md: every error is application/problem+json).
 */
import { describe, expect, it } from 'vitest';
import { startStack } from '../cli/support.js';
import { rawHttp } from './support.js';

const problemIn = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

describe('requests the HTTP parser refuses', { timeout: 60_000 }, () => {
  it('get a problem document and a closed connection', async () => {
    const stack = await startStack();
    const big = await rawHttp(
      stack.url,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(big).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(big).toMatch(/^content-type: application\/problem\+json\r$/im);
    expect(problemIn(big)).toMatchObject({ status: 431, code: 'EXTJOB_HEADERS_TOO_LARGE' });

    const bad = await rawHttp(stack.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(problemIn(bad)).toMatchObject({ status: 400, code: 'EXTJOB_VALIDATION_FAILED' });

    // the server still answers
    expect((await fetch(`${stack.url}/healthz`)).status).toBe(200);
  });
});

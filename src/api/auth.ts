/**
 * Who is calling. API tokens come from configuration as sha256 digests; a presented
 * token is hashed and compared with every configured digest in constant time. Event
 * tokens are per job and checked by the broker (also hashed, constant time). Tokens
 * are never logged: only a short digest prefix names the caller in history.
 *
 * Insecure mode (development, `extjob dev`): API routes need no token. The events
 * route then accepts a request without a token, but a token that is presented must
 * still be valid, so a misconfigured executor is caught before production.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { ApiToken, Scope } from '../shared/config.js';
import { ExtjobError } from '../shared/errors.js';

export interface Principal {
  /** Names the caller in job history without revealing the token. */
  caller: string;
  scopes: ReadonlySet<Scope>;
}

const ANONYMOUS: Principal = { caller: 'anonymous', scopes: new Set<Scope>(['admin']) };

export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer[ \t]+([^\s]{1,4096})[ \t]*$/i.exec(header);
  return m ? m[1] : undefined;
}

export class TokenTable {
  private readonly entries: { digest: Buffer; scopes: ReadonlySet<Scope>; caller: string }[];

  constructor(tokens: readonly ApiToken[]) {
    this.entries = tokens.map((t) => ({
      digest: Buffer.from(t.sha256, 'hex'),
      scopes: new Set(t.scopes),
      caller: `token:${t.sha256.slice(0, 8)}`,
    }));
  }

  /** The principal of a presented token, or undefined. Compares against every entry. */
  lookup(token: string): Principal | undefined {
    const digest = createHash('sha256').update(token).digest();
    let found: Principal | undefined;
    for (const e of this.entries)
      if (timingSafeEqual(digest, e.digest) && !found) found = { caller: e.caller, scopes: e.scopes };
    return found;
  }
}

export const allows = (p: Principal, scope: Scope): boolean => p.scopes.has('admin') || p.scopes.has(scope);

/** Authenticate with an API token and require `scope`; the principal goes to res.locals. */
export function requireScope(table: TokenTable, insecure: boolean, scope: Scope): RequestHandler {
  return (req, res, next) => {
    if (insecure) {
      res.locals.principal = ANONYMOUS;
      return next();
    }
    const token = bearerToken(req.get('authorization'));
    if (!token) return next(new ExtjobError('EXTJOB_UNAUTHORIZED', 'send Authorization: Bearer <token>'));
    const p = table.lookup(token);
    if (!p) return next(new ExtjobError('EXTJOB_UNAUTHORIZED', 'the token is not valid'));
    if (!allows(p, scope))
      return next(new ExtjobError('EXTJOB_FORBIDDEN', `the token lacks the ${scope} scope`));
    res.locals.principal = p;
    next();
  };
}

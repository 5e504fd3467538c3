import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { RequestHandler } from 'express';
import { Problem, sendProblem } from './problem.js';

export const ADMIN_TOKEN_FILE = 'admin.token';

/** Token → project lookups keyed by the token's SHA-256, so comparisons don't leak by timing. */
export interface TokenRegistry {
  projectOf(token: string): string | undefined;
}

const digest = (token: string) => crypto.createHash('sha256').update(token).digest('base64');

export function tokenRegistry(tokens: Map<string, string>): TokenRegistry {
  const byDigest = new Map<string, string>();
  for (const [token, project] of tokens) byDigest.set(digest(token), project);
  return { projectOf: (token) => byDigest.get(digest(token)) };
}

/**
 * With no RELAY_TOKENS, the relay keeps one token for project `default` in the data folder,
 * created on first start with owner-only permissions. Returns its path and whether it is new.
 */
export function ensureAdminToken(dataDir: string): { token: string; file: string; created: boolean } {
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  fs.mkdirSync(dataDir, { recursive: true });
  try {
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token) return { token, file, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = `rly_${crypto.randomBytes(32).toString('base64url')}`;
  // 'wx' fails if another process created it meanwhile; mode applies at creation.
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, file, created: true };
}

export function requireToken(registry: TokenRegistry): RequestHandler {
  return (req, res, next) => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const project = match ? registry.projectOf(match[1]) : undefined;
    if (!project) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="callback-relay"');
      return sendProblem(
        res,
        new Problem(
          401,
          'unauthorized',
          'Unauthorized',
          match ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>',
        ),
      );
    }
    res.locals.project = project;
    next();
  };
}

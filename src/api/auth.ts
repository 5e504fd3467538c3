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

const digest = (token: string) => crypto.hash('sha256', token, 'base64');

export function tokenRegistry(tokens: Map<string, string>): TokenRegistry {
  const byDigest = new Map<string, string>();
  for (const [token, project] of tokens) byDigest.set(digest(token), project);
  return { projectOf: (token) => byDigest.get(digest(token)) };
}

/** An admin.token that group or others may read or write: the relay will not start on it. */
export class AdminTokenExposedError extends Error {
  constructor(
    readonly file: string,
    readonly mode: number,
  ) {
    super(
      `${file} is readable or writable by group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `run chmod 600 ${file} and start the relay again`,
    );
    this.name = 'AdminTokenExposedError';
  }
}

/**
 * With no RELAY_TOKENS, the relay keeps one token for project `default` in the data folder,
 * created on first start with owner-only permissions. Returns its path and whether it is new.
 * An existing token file others can read or change is refused: the token may already be
 * known, so loosening it is the owner's call to undo, not the relay's to paper over.
 */
export function ensureAdminToken(dataDir: string): { token: string; file: string; created: boolean } {
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (fd !== undefined) {
    try {
      // The mode of the file being read, not of whatever the path names a moment later.
      const mode = fs.fstatSync(fd).mode & 0o777;
      if (process.platform !== 'win32' && mode & 0o066) throw new AdminTokenExposedError(file, mode);
      const token = fs.readFileSync(fd, 'utf8').trim();
      if (token) return { token, file, created: false };
    } finally {
      fs.closeSync(fd);
    }
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

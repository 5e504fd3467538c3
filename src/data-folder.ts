import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config.js';

/**
 * Makes the folder the relay keeps files in (owner-only) and checks that this process can
 * write there: a path that cannot be one (a file, a read-only or forbidden place) is a bad
 * value of the variable that named it, said before the database is opened or anything written.
 */
export function ensureDataFolder(dir: string, variable: string): void {
  try {
    makeFolder(dir);
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const where = e.path && e.path !== dir ? ` (${e.path})` : '';
    throw new ConfigError(variable, `${JSON.stringify(dir)} cannot be a folder this process writes in: ${e.code ?? e.message}${where}`);
  }
}

/**
 * `mkdir -p`, one folder at a time from the nearest one that exists. Node's own recursive
 * mkdirSync never returns where a file system answers ENOENT for a folder whose parent exists
 * (procfs does), so it is not used.
 */
function makeFolder(dir: string): void {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; ) {
    if (fs.existsSync(at)) break;
    missing.push(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  // Nothing missing: a folder is what it should be; anything else answers EEXIST here.
  if (missing.length === 0 && !fs.statSync(dir).isDirectory()) fs.mkdirSync(dir);
  for (const folder of missing.reverse()) {
    try {
      fs.mkdirSync(folder, { mode: 0o700 });
    } catch (err) {
      // Made meanwhile by another process starting beside this one.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.statSync(folder).isDirectory()) throw err;
    }
  }
}

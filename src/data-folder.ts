import fs from 'node:fs';
import { ConfigError } from './config.js';

/**
 * Makes the folder the relay keeps files in (owner-only) and checks that this process can
 * write there: a path that cannot be one (a file, a read-only or forbidden place) is a bad
 * value of the variable that named it, said before the database is opened or anything written.
 */
export function ensureDataFolder(dir: string, variable: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const where = e.path && e.path !== dir ? ` (${e.path})` : '';
    throw new ConfigError(variable, `${JSON.stringify(dir)} cannot be a folder this process writes in: ${e.code ?? e.message}${where}`);
  }
}

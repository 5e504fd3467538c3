import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/*
 * Which file a script action may run: a regular, executable file whose real location (every
 * symlink followed) is directly inside RELAY_EXEC_DIR. Checked when a listener is created and
 * again before every run, since the folder can change in between. Messages never show the
 * folder's path: they reach API clients, who need not know the relay's file system.
 */

export type ResolvedCommand =
  | { ok: true; file: string }
  | { ok: false; error: 'EXEC_NOT_FOUND' | 'EXEC_REFUSED'; message: string };

// As the listener schema has it; checked again here because an attempt's callback is stored data.
const BARE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$/;

const refused = (message: string): ResolvedCommand => ({ ok: false, error: 'EXEC_REFUSED', message });
const notFound = (message: string): ResolvedCommand => ({ ok: false, error: 'EXEC_NOT_FOUND', message });

export async function resolveCommand(execDir: string, command: unknown): Promise<ResolvedCommand> {
  if (typeof command !== 'string' || !BARE_NAME.test(command) || command.includes('..')) {
    return refused(`${JSON.stringify(command)} is not a bare file name (no path separators, no ..)`);
  }
  let realDir: string;
  try {
    realDir = await fs.realpath(execDir);
  } catch (err) {
    return notFound(`the relay's script folder (RELAY_EXEC_DIR) cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let real: string;
  try {
    real = await fs.realpath(path.join(realDir, command));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return notFound(`${command} is not in the relay's script folder (RELAY_EXEC_DIR)`);
    // A symlink loop (ELOOP) or an unreadable link.
    return refused(`${command} cannot be resolved (${code ?? 'error'})`);
  }
  if (path.dirname(real) !== realDir) return refused(`${command} leads outside the relay's script folder (RELAY_EXEC_DIR)`);
  let stat;
  try {
    stat = await fs.stat(real);
  } catch (err) {
    return notFound(`${command} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!stat.isFile()) return refused(`${command} is not a regular file`);
  try {
    await fs.access(real, constants.X_OK);
  } catch {
    return refused(`${command} is not executable by the relay's user (chmod +x it)`);
  }
  return { ok: true, file: real };
}

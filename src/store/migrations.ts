import fs from 'node:fs';

/** One numbered file of a backend's migrations folder (db/sqlite/, db/postgres/). */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The migrations in `dir` (files named like 001_name.sql), in version order. */
export function readMigrations(dir: URL): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .map((f) => ({ version: Number.parseInt(f, 10), name: f, sql: fs.readFileSync(new URL(f, dir), 'utf8') }))
    .sort((a, b) => a.version - b.version);
}

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

/**
 * The database has migrations this release does not know: a later release applied them. An
 * earlier release would misread what they changed (since PostgreSQL migration 006, a
 * dispatcher of an earlier release would take deliveries a later one holds), so it refuses to
 * open the database rather than serve it.
 */
export class SchemaTooNewError extends Error {
  constructor(
    readonly backend: 'sqlite' | 'postgres',
    readonly unknown: readonly string[],
    readonly latestKnown: string | null,
  ) {
    super(
      `the ${backend === 'sqlite' ? 'SQLite' : 'PostgreSQL'} database was migrated by a later release of callback-relay: ` +
        `it has ${unknown.length === 1 ? 'migration' : 'migrations'} ${unknown.join(', ')}, ` +
        `which this release does not know (its latest is ${latestKnown ?? 'none'}). ` +
        'Run the release that applied them, or a later one; a release does not undo a later one\'s migrations.',
    );
    this.name = 'SchemaTooNewError';
  }
}

/** Throws SchemaTooNewError when `applied` (version and name rows of schema_migrations) holds a version `migrations` lacks. */
export function refuseUnknownMigrations(backend: 'sqlite' | 'postgres', applied: ReadonlyArray<{ version: number; name: string }>, migrations: readonly Migration[]): void {
  const known = new Set(migrations.map((m) => m.version));
  const unknown = applied.filter((a) => !known.has(a.version)).sort((a, b) => a.version - b.version);
  if (unknown.length) throw new SchemaTooNewError(backend, unknown.map((a) => a.name), migrations.at(-1)?.name ?? null);
}

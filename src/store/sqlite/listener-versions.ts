import type { Database, Statement } from 'better-sqlite3';
import type { EnabledListener, FanOut, KeptListeners, ListenerRouting } from '../store.js';

/**
 * Each project's listener version (see ListenerRouting in ../store.ts): bumped by every
 * listener change, read by every transaction that routes events.
 */
export function listenerVersions(db: Database) {
  const current = db.prepare('SELECT version FROM listener_versions WHERE project = ?').pluck() as Statement<[string], number>;
  const bump = db.prepare(`INSERT INTO listener_versions (project, version) VALUES (?, 1)
    ON CONFLICT (project) DO UPDATE SET version = version + 1`);

  return {
    /** Call inside the transaction of the listener change. */
    bump(project: string): void {
      bump.run(project);
    },
    current(project: string): number {
      return current.get(project) ?? 0;
    },
    /**
     * The matcher for the project's listeners as this transaction sees them: the one compiled
     * at the current version, or one compiled now from the enabled listeners read here (the
     * rows only of those the routing does not keep at their revision).
     * Call inside the write transaction that routes with it.
     */
    fanOut(project: string, routing: ListenerRouting, enabled: (project: string, kept: KeptListeners) => EnabledListener[]): FanOut {
      const version = this.current(project);
      const route = routing.at(project, version);
      if (route) return route;
      const kept = routing.kept(project);
      return routing.compile(project, version, enabled(project, kept), kept);
    },
  };
}

export type ListenerVersions = ReturnType<typeof listenerVersions>;

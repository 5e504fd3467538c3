import type { ListenerGateState } from '../../dispatch/listener-gate.js';
import type { AttemptResult, ClaimOptions, RecordJudge } from '../store.js';
import type { Database } from './database.js';
import type { BacklogQueries } from './backlogs.js';
import { claimQueries } from './claim.js';
import type { DueNotice } from './notify.js';
import { judgeBatch, recordBatch, type AppendIn } from './record.js';

/*
 * A dispatcher cycle is one transaction of three statements, each one round trip, with the
 * callbacks of the gate between them:
 *   1. (record.ts) the attempts, the deliveries' outcomes, listeners a 410 turned off, ordered
 *      keys handed on; the gate states to judge by (locked); the projects with due work.
 *   2. (judge, allot; claim.ts) the rollups and the judged gate states written; the candidates
 *      picked (locked), with their listeners' gate states (locked).
 *   3. (admit; claim.ts) the candidates settled: leased, deferred, held or cancelled; the
 *      states the gate changed written.
 * Rare work goes in statements of its own between 1 and 2: listeners the judgement turns off,
 * the relay's own events, the first window of a turned-off listener's backlog held
 * (backlogs.ts). The last statement carries the COMMIT along.
 */
export function queueQueries(db: Database, { notice, append, backlogs }: { notice: DueNotice; append: AppendIn; backlogs: BacklogQueries }) {
  const claims = claimQueries();

  async function cycle(owner: string, results: AttemptResult[], claim: ClaimOptions | null, now: number, judge: RecordJudge | null) {
    const done = await db.transaction(async (c) => {
      const batch = await recordBatch(c, owner, results, now, judge !== null, claim?.now ?? null);
      // Held deliveries that became due may belong to a listener another process serves.
      if (batch.promoted > 0) notice.afterCommit(c);
      const disabled = batch.disabled;
      let judged: ReadonlyMap<string, ListenerGateState> = new Map();
      if (judge && (batch.recorded.length || disabled.size)) {
        const verdict = await judgeBatch(c, { results, recorded: batch.recorded, gone: [...disabled.keys()] }, batch.states, judge, now, append);
        judged = verdict.changed;
        for (const [id, project] of verdict.disabled) disabled.set(id, project);
        // The relay's own events may have made deliveries due that the first statement could not see.
        for (const project of verdict.appendedTo) if (!batch.due.includes(project)) batch.due.push(project);
        batch.due.sort();
      }
      // Their waiting deliveries are held as when a client disables a listener.
      for (const [id, project] of disabled) await backlogs.start(c, project, id, 'hold', now);
      const shares = claim && batch.due.length ? [...claim.allot(batch.due)].filter(([, n]) => n > 0) : [];
      const asked = shares.reduce((sum, [, n]) => sum + n, 0);
      if (batch.recorded.length === 0 && judged.size === 0 && shares.length === 0) return { disabledListeners: [...disabled.keys()], claimed: [], orphans: [], asked, contended: 0 };
      const candidates = await claims.pick(c, batch.recorded, judged, shares, claim, now);
      const { claimed, orphans, contended } =
        claim && candidates.length ? await claims.admitAndSettle(c, candidates, judged, claim) : { claimed: [], orphans: [], contended: 0 };
      return { disabledListeners: [...disabled.keys()], claimed, orphans, asked, contended };
    });
    const { orphans, ...outcome } = done;
    if (orphans.length && claim) {
      // Not fatal to the cycle: left leased, they are claimed (and cancelled) again when the lease ends.
      await claims.cancelOrphans(db, claim.owner, orphans, now).catch(() => {});
    }
    return outcome;
  }

  return {
    /** One transaction, one commit: what finished is recorded (and judged), what is due is claimed. */
    recordAndClaim(owner: string, results: AttemptResult[], claim: ClaimOptions | null, now: number, judge?: RecordJudge | null) {
      return cycle(owner, results, claim, now, judge ?? null);
    },
  };
}

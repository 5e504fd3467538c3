import { judgeRecorded, turnedOffEvents } from '../rows.js';
import type { AttemptResult, ListenerRouting, NewEvent, RecordJudge } from '../store.js';
import type { GateQueries } from './gates.js';

export interface JudgementDeps {
  gates: GateQueries;
  /** Turns a listener off as a 410 does; whether it was on. */
  disable(listenerId: string, reason: string, now: number): boolean;
  /** Appends events as appendEvents does: routed at the project's listener version read here. */
  append(project: string, events: NewEvent[], routing: ListenerRouting, now: number): void;
}

/**
 * Applies the gate's judgement of the attempts just recorded: writes the listeners' changed
 * states, turns off the listeners it names and appends the relay's own events (after the
 * turning off, so they are routed by it), with one about each listener turned off, by the
 * judgement or by the 410s of `results` that turned off `gone` in recording. Call inside the
 * recording transaction; answers the listeners the judgement turned off.
 */
export function applyJudgement(
  { gates, disable, append }: JudgementDeps,
  { results, recorded, gone }: { results: readonly AttemptResult[]; recorded: readonly AttemptResult[]; gone: readonly string[] },
  judge: RecordJudge,
  now: number,
): string[] {
  const verdict = judgeRecorded(judge, recorded, (ids) => gates.read(ids), now);
  gates.write(verdict.changed);
  const judgedOff = new Map([...verdict.disable].filter(([listenerId, reason]) => disable(listenerId, reason, now)));
  for (const { project, envelope } of [...verdict.events, ...turnedOffEvents(judge, results, gone, judgedOff, now)]) {
    // The relay makes the envelope and its unique id, which doubles as the body hash.
    append(project, [{ envelope, original: null, bodyHash: envelope.id }], judge.routing, now);
  }
  return [...judgedOff.keys()];
}

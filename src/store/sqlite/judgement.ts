import { initialGateState } from '../../dispatch/listener-gate.js';
import { toJudgedAttempt } from '../rows.js';
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
 * turning off, so they are routed by it). Call inside the recording transaction; answers the
 * listeners it turned off.
 */
export function applyJudgement({ gates, disable, append }: JudgementDeps, recorded: readonly AttemptResult[], judge: RecordJudge, now: number): string[] {
  if (recorded.length === 0) return [];
  const attempts = recorded.map(toJudgedAttempt);
  const ids = [...new Set(attempts.map((a) => a.listenerId))];
  const stored = gates.read(ids);
  const states = new Map(ids.map((id) => [id, stored.get(id) ?? initialGateState(now)]));
  const verdict = judge.judge(attempts, states, now);
  gates.write(verdict.changed);
  const disabled: string[] = [];
  for (const [listenerId, reason] of verdict.disable) {
    if (disable(listenerId, reason, now)) disabled.push(listenerId);
  }
  for (const { project, envelope } of verdict.events) {
    // The relay makes the envelope and its unique id, which doubles as the body hash.
    append(project, [{ envelope, original: null, bodyHash: envelope.id }], judge.routing, now);
  }
  return disabled;
}

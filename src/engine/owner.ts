import crypto from 'node:crypto';
import os from 'node:os';

/**
 * Who runs a task: `host:pid:random`, one per engine runner. The random part tells two runners
 * of one process apart (a runner stopped and started again, or several relays in one process),
 * so "the process is alive" is not taken to mean "its runner still is".
 */
const liveHere = new Set<string>();

export function newOwner(): string {
  const owner = `${os.hostname()}:${process.pid}:${crypto.randomBytes(6).toString('hex')}`;
  liveHere.add(owner);
  return owner;
}

/** The runner has stopped: tasks it still holds are orphans at once. */
export function ownerStopped(owner: string): void {
  liveHere.delete(owner);
}

/**
 * Whether `owner` is known to be gone without waiting for its lease: a runner of this host whose
 * process no longer exists, or a runner of this very process that has stopped. Runners of other
 * hosts are never judged here; only their lease tells.
 */
export function ownerIsDeadHere(owner: string): boolean {
  const [host, pidText] = owner.split(':');
  if (host !== os.hostname()) return false;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return !liveHere.has(owner);
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    // EPERM: a process of another user holds that pid now; it is not a relay of ours, so ours is gone.
    return (err as NodeJS.ErrnoException).code === 'ESRCH' || (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

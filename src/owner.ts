import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

/*
 * Who holds a lease: an engine runner's tasks and a dispatcher's deliveries name their owner
 * `place:pid:random`. The place is the host name, followed on Linux by `/` and the process's
 * pid namespace (`myhost/4026531836`), so that two containers that share a host name (host
 * networking) and not a pid namespace never take each other's pids for their own. The random
 * part tells two owners of one process apart (a runner stopped and started again, or several
 * relays in one process), so "the process is alive" is not taken to mean "its owner still is".
 */
const liveHere = new Set<string>();

/** This process's pid namespace (the number in `/proc/self/ns/pid`), or null where there is none to read. */
function pidNamespace(): string | null {
  try {
    return /\[(\d+)\]/.exec(fs.readlinkSync('/proc/self/ns/pid'))?.[1] ?? null;
  } catch {
    return null;
  }
}

const namespace = pidNamespace();
const place = namespace === null ? os.hostname() : `${os.hostname()}/${namespace}`;

export function newOwner(): string {
  const owner = `${place}:${process.pid}:${crypto.randomBytes(6).toString('hex')}`;
  liveHere.add(owner);
  return owner;
}

/** The owner has stopped: what it still holds is an orphan at once. */
export function ownerStopped(owner: string): void {
  liveHere.delete(owner);
}

/**
 * The pid of `owner` when it is a process of this host and pid namespace; null for any other
 * (another host, another namespace, or not an owner of this form). Owners written before the
 * namespace was part of the name (`host:pid:random`) are taken to be of this namespace.
 */
function pidHere(owner: string): number | null {
  const [ownerPlace, pidText] = owner.split(':');
  const [host, ns] = ownerPlace.split('/');
  if (host !== os.hostname()) return null;
  if (ns !== undefined && ns !== namespace) return null;
  const pid = Number(pidText);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Whether process `pid` of this namespace is gone. */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    // EPERM: a process of another user holds that pid now; it is not a relay of ours, so ours is gone.
    return (err as NodeJS.ErrnoException).code === 'ESRCH' || (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether `owner` is known to be gone without waiting for its lease: an owner of this host whose
 * process no longer exists, or an owner of this very process that has stopped (known only to the
 * thread that made it). Owners of other hosts are never judged here; only their lease tells.
 */
export function ownerIsDeadHere(owner: string): boolean {
  const pid = pidHere(owner);
  if (pid === null) return false;
  if (pid === process.pid) return !liveHere.has(owner);
  return processGone(pid);
}

/**
 * Whether `owner` is another process of this host that no longer exists. Unlike ownerIsDeadHere
 * it never judges an owner of this process: a dispatcher in another thread of this process (one
 * relay's dispatch thread beside another's) is alive, whatever this thread knows of it.
 */
export function processIsGoneHere(owner: string): boolean {
  const pid = pidHere(owner);
  return pid !== null && pid !== process.pid && processGone(pid);
}

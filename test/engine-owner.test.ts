import { spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { newOwner, ownerIsDeadHere, ownerStopped } from '../src/engine/owner.js';
import { isOrphan } from '../src/engine/recovery.js';
import type { InFlightTask } from '../src/store/engine-store.js';

const task = (owner: string | null, lease_until: number | null): InFlightTask => ({
  id: 't1',
  project: 'p',
  execution_id: 'e1',
  name: 'work',
  action: 'std.http',
  state: 'RUNNING',
  state_info: null,
  result: null,
  tries: 1,
  next_run_at: null,
  action_started_at: 1_000,
  rerun: false,
  created_at: 1_000,
  updated_at: 1_000,
  owner,
  lease_until,
});

describe('task owners', () => {
  it('knows a runner of this process is alive until it stops', () => {
    const owner = newOwner();
    expect(owner.startsWith(`${os.hostname()}:${process.pid}:`)).toBe(true);
    expect(ownerIsDeadHere(owner)).toBe(false);
    ownerStopped(owner);
    expect(ownerIsDeadHere(owner)).toBe(true);
  });

  it('knows a process of this host is gone once it exits, and never judges another host', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    await once(child, 'spawn');
    const owner = `${os.hostname()}:${child.pid}:abcdef`;
    expect(ownerIsDeadHere(owner)).toBe(false);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(ownerIsDeadHere(owner)).toBe(true);
    expect(ownerIsDeadHere(`another-host-${os.hostname()}:${child.pid}:abcdef`)).toBe(false);
  });

  it('takes as orphans only tasks whose lease ended or whose runner is known dead', () => {
    const self = newOwner();
    const live = newOwner();
    const gone = newOwner();
    ownerStopped(gone);
    const now = 10_000;
    expect(isOrphan(task(self, 0), now, self)).toBe(false);
    expect(isOrphan(task(live, now + 1), now, self)).toBe(false);
    expect(isOrphan(task(live, now - 1), now, self)).toBe(true);
    expect(isOrphan(task(gone, now + 60_000), now, self)).toBe(true);
    expect(isOrphan(task('elsewhere:1:x', now + 60_000), now, self)).toBe(false);
    expect(isOrphan(task('elsewhere:1:x', now - 1), now, self)).toBe(true);
    // Rows from before task owners: their runner is the stopped process that wrote them.
    expect(isOrphan(task(null, null), now, self)).toBe(true);
    ownerStopped(self);
    ownerStopped(live);
  });
});

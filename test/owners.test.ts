import { spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { newOwner, ownerIsDeadHere, ownerStopped, processIsGoneHere } from '../src/owner.js';
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

// This process's place in owner names: the host and, on Linux, its pid namespace.
const namespace = /\[(\d+)\]/.exec(fs.readlinkSync('/proc/self/ns/pid'))![1];
const place = `${os.hostname()}/${namespace}`;

describe('lease owners', () => {
  it('names the host, the pid namespace and the process, and knows an owner of this process is alive until it stops', () => {
    const owner = newOwner();
    expect(owner).toMatch(new RegExp(`^${place.replace(/[.]/g, '\\.')}:${process.pid}:[0-9a-f]{12}$`));
    expect(ownerIsDeadHere(owner)).toBe(false);
    ownerStopped(owner);
    expect(ownerIsDeadHere(owner)).toBe(true);
    // A dispatcher's sweep never judges this process, whatever this thread knows of the owner.
    expect(processIsGoneHere(owner)).toBe(false);
  });

  it('knows a process of this host is gone once it exits, and never judges another host or pid namespace', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    await once(child, 'spawn');
    const owner = `${place}:${child.pid}:abcdef`;
    // Written by a release that named the host only: taken to be of this namespace.
    const unnamespaced = `${os.hostname()}:${child.pid}:abcdef`;
    const otherNamespace = `${os.hostname()}/1${namespace}:${child.pid}:abcdef`;
    const otherHost = `another-host-${os.hostname()}:${child.pid}:abcdef`;
    for (const o of [owner, unnamespaced, otherNamespace, otherHost]) {
      expect(ownerIsDeadHere(o), o).toBe(false);
      expect(processIsGoneHere(o), o).toBe(false);
    }
    child.kill('SIGKILL');
    await once(child, 'exit');
    for (const o of [owner, unnamespaced]) {
      expect(ownerIsDeadHere(o), o).toBe(true);
      expect(processIsGoneHere(o), o).toBe(true);
    }
    for (const o of [otherNamespace, otherHost, 'not an owner', `${process.pid}-abcdef`]) {
      expect(ownerIsDeadHere(o), o).toBe(false);
      expect(processIsGoneHere(o), o).toBe(false);
    }
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

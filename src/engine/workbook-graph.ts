/** The transition graph of one workflow: which tasks start it, and which loops can never finish. */
export interface TaskEdges {
  onSuccess: string[];
  onError: string[];
  onComplete: string[];
}

function successors(task: TaskEdges): string[] {
  return [...new Set([...task.onSuccess, ...task.onError, ...task.onComplete])];
}

/** Tasks no other task transitions to, in declaration order; a task's transition to itself does not count. */
export function findStartTasks(tasks: Record<string, TaskEdges>): string[] {
  const targeted = new Set<string>();
  for (const [name, task] of Object.entries(tasks)) {
    for (const next of successors(task)) if (next !== name) targeted.add(next);
  }
  return Object.keys(tasks).filter((name) => !targeted.has(name));
}

/** Strongly connected components (Tarjan, iterative so a long chain cannot overflow the stack). */
function components(tasks: Record<string, TaskEdges>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const result: string[][] = [];
  let counter = 0;
  for (const root of Object.keys(tasks)) {
    if (index.has(root)) continue;
    const work: Array<{ name: string; next: string[]; at: number }> = [];
    const enter = (name: string) => {
      index.set(name, counter);
      low.set(name, counter++);
      stack.push(name);
      onStack.add(name);
      work.push({ name, next: successors(tasks[name]).filter((n) => Object.hasOwn(tasks, n)), at: 0 });
    };
    enter(root);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      if (frame.at < frame.next.length) {
        const next = frame.next[frame.at++];
        if (!index.has(next)) enter(next);
        else if (onStack.has(next)) low.set(frame.name, Math.min(low.get(frame.name)!, index.get(next)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.name, Math.min(low.get(parent.name)!, low.get(frame.name)!));
      if (low.get(frame.name) === index.get(frame.name)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.name);
        result.push(component);
      }
    }
  }
  return result;
}

/** The shortest loop from `start` back to itself, inside `members`: [start, ..., start]. */
function loopThrough(start: string, members: Set<string>, tasks: Record<string, TaskEdges>): string[] {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const current = queue[i];
    for (const next of successors(tasks[current])) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at: string | undefined = current; at !== start && at !== undefined; at = parent.get(at)) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!parent.has(next)) {
        parent.set(next, current);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

/**
 * Loops that no run can leave successfully: every task in the component sends all its
 * success paths (`on-success` and `on-complete`) back into the component. Each loop is
 * returned as a path that starts and ends at its first task in declaration order.
 */
export function findCyclesWithoutExit(tasks: Record<string, TaskEdges>): string[][] {
  const order = Object.keys(tasks);
  const loops: string[][] = [];
  for (const component of components(tasks)) {
    const members = new Set(component);
    const [only] = component;
    if (component.length === 1 && !successors(tasks[only]).includes(only)) continue;
    const hasExit = component.some((name) => {
      const onward = [...tasks[name].onSuccess, ...tasks[name].onComplete];
      return onward.length === 0 || onward.some((next) => !members.has(next));
    });
    if (hasExit) continue;
    const start = order.find((name) => members.has(name))!;
    loops.push(loopThrough(start, members, tasks));
  }
  return loops.sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
}

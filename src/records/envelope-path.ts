/*
 * The one path reader for the event envelope: filters, exec arguments and templates read
 * values with it. Dot notation (`data.properties.vendor`); a numeric segment indexes an array
 * (`data.hosts.0.name`); a key that itself contains dots is written in brackets as a JSON
 * string (`data["nova_object.data"].host`).
 *
 * Own properties only, so `constructor` or `__proto__` never reach the prototype. Payloads
 * relayed from elsewhere have keys with dots in them (oslo versioned objects:
 * "nova_object.data"), so when a dotted segment is missing the reader also tries it joined with
 * the following dotted segments, exact key first, without backtracking. Compiling is linear in
 * the path, and a walk makes at most one lookup per segment.
 */

export type PathReader = (root: unknown) => unknown;

interface Segment {
  key: string;
  /** Written in brackets: the key exactly, never joined with its neighbours. */
  exact: boolean;
}

/** The path's segments, or why it cannot be read. */
export function parseEnvelopePath(path: string): { segments: Segment[] } | { error: string } {
  const segments: Segment[] = [];
  let i = 0;
  while (i < path.length) {
    if (path[i] === '[') {
      let j = i + 1;
      if (path[j] !== '"') return { error: `"${path}": a bracketed key is a JSON string, such as ["a.b"]` };
      j++;
      while (j < path.length && path[j] !== '"') j += path[j] === '\\' ? 2 : 1;
      if (j >= path.length || path[j + 1] !== ']') return { error: `"${path}": a bracketed key needs its closing "]` };
      let key: string;
      try {
        key = JSON.parse(path.slice(i + 1, j + 1)) as string;
      } catch {
        return { error: `"${path}": the bracketed key is not a valid JSON string` };
      }
      segments.push({ key, exact: true });
      i = j + 2;
    } else {
      let j = i;
      while (j < path.length && path[j] !== '.' && path[j] !== '[') j++;
      if (j === i) return { error: `"${path}" has an empty path segment` };
      segments.push({ key: path.slice(i, j), exact: false });
      i = j;
    }
    if (i === path.length) break;
    if (path[i] === '.') {
      i++;
      if (i === path.length) return { error: `"${path}" has an empty path segment` };
    } else if (path[i] !== '[') {
      return { error: `"${path}": expected "." or "[" after a bracketed key` };
    }
  }
  if (segments.length === 0) return { error: 'an empty path' };
  return { segments };
}

const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object';

/** Compiles a path (as text, or as plain segments) into a reader; throws a TypeError for one that does not parse. */
export function compileEnvelopePath(path: string | readonly string[]): PathReader {
  let segments: Segment[];
  if (typeof path === 'string') {
    const parsed = parseEnvelopePath(path);
    if ('error' in parsed) throw new TypeError(parsed.error);
    segments = parsed.segments;
  } else {
    segments = path.map((key) => ({ key, exact: false }));
  }
  const n = segments.length;
  if (n === 1) {
    const { key } = segments[0];
    return (root) => (isRecord(root) && Object.hasOwn(root, key) ? root[key] : undefined);
  }
  // A run of dotted segments i..j joins as dotted.slice(starts[i], starts[j + 1] - 1).
  const dotted = segments.map((s) => s.key).join('.');
  const starts = [0];
  for (const s of segments) starts.push(starts[starts.length - 1] + s.key.length + 1);
  return (root) => {
    let current = root;
    let i = 0;
    while (i < n) {
      if (!isRecord(current)) return undefined;
      let j = i;
      let key = segments[i].key;
      while (!Object.hasOwn(current, key)) {
        // Only dotted segments join, and only with dotted neighbours.
        if (segments[i].exact || ++j === n || segments[j].exact) return undefined;
        key = dotted.slice(starts[i], starts[j + 1] - 1);
      }
      current = current[key];
      i = j + 1;
    }
    return current;
  };
}

/** The value at a path of `root`; undefined when it is missing or the path does not parse. */
export function readEnvelopePath(root: unknown, path: string | readonly string[]): unknown {
  try {
    return compileEnvelopePath(path)(root);
  } catch {
    return undefined;
  }
}

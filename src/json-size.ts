/*
 * How large a value is as JSON, and how to say so: the bounds on results, workbooks and
 * templates are all bytes of JSON, measured and described the same way.
 */

/** Bytes of `value` as JSON (UTF-8); undefined counts as null. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');
}

/**
 * Bytes of `value` as JSON, counting a value reached twice (a YAML alias) each time; stops
 * counting once past `maxBytes` and answers null, so the walk costs at most about `maxBytes`
 * steps however far the value would expand.
 */
export function jsonBytesWithin(value: unknown, maxBytes: number): number | null {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      total += 2 + Math.max(0, v.length - 1);
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      total += 2 + Math.max(0, entries.length - 1);
      for (const [k, item] of entries) {
        total += jsonBytes(k) + 1;
        stack.push(item);
      }
    } else total += jsonBytes(v);
    if (total > maxBytes) return null;
  }
  return total;
}

const trim = (n: number) => n.toFixed(1).replace(/\.0$/, '');

/** `900 bytes`, `12.5 KiB`, `1.3 MiB`. */
export function describeBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${trim(bytes / 1024)} KiB`;
  return `${trim(bytes / (1024 * 1024))} MiB`;
}

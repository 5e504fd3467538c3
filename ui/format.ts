const pad = (n: number) => String(n).padStart(2, '0');

/** Local time as `2026-11-23 10:00:05` (`.123` with `ms`): sortable, and the same in every browser locale. */
export function localTime(iso: string | null | undefined, { ms = false } = {}): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const seconds = `${pad(d.getSeconds())}${ms ? `.${String(d.getMilliseconds()).padStart(3, '0')}` : ''}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${seconds}`;
}

/** `75 ms`, `2.5 s`, `5 min`, `2 h 30 min`. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(ms < 10_000 ? 2 : 1))} s`;
  if (ms < 3_600_000) {
    const seconds = Math.round(ms / 1000);
    return twoUnits(Math.floor(seconds / 60), 'min', seconds % 60, 's');
  }
  const minutes = Math.round(ms / 60_000);
  return twoUnits(Math.floor(minutes / 60), 'h', minutes % 60, 'min');
}

const twoUnits = (big: number, bigUnit: string, small: number, smallUnit: string) =>
  small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;

/** A rate in 0…1 as a percentage. */
export function percent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined) return 'no attempts';
  return `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)} %`;
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** The API's spans (`90m`, `24h`, `7d`) in milliseconds. */
export function parseSpan(span: string): number | null {
  const m = /^(\d+)(m|h|d)$/.exec(span);
  if (!m) return null;
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd'];
}

/** A `<input type="datetime-local">` value (local time, no offset) as RFC 3339 UTC. */
export function fromLocalInput(value: string): string {
  return new Date(value).toISOString();
}

/** An instant as a `<input type="datetime-local">` value. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

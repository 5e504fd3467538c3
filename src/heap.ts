import v8 from 'node:v8';

/**
 * RELAY_HEAP_GROWING_PERCENT: how far V8 lets the old generation grow between two full
 * collections, in percent (V8's `--heap-growing-percent`, which NODE_OPTIONS does not accept).
 * Unset, V8 chooses, and lets it grow up to fourfold when the heap's limit is large: after a
 * burst of batch ingest the API thread then carries about 100 MB of garbage it has no reason to
 * collect yet. A lower growth keeps the process's peak nearer its live data for more full
 * collections (see "Memory" in the README's Performance section). V8's flags are process-wide,
 * so this covers the dispatch thread too; call it before the relay starts.
 */
export function limitHeapGrowth(percent: number): void {
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

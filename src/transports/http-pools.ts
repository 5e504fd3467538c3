import { type Dispatcher, Pool } from 'undici';

/** Past this many origins, adding one first drops the pools that hold no connection and no request. */
const IDLE_CHECK_ABOVE = 256;

export interface OriginPools {
  dispatch(options: Dispatcher.DispatchOptions & { origin: string }, handler: Dispatcher.DispatchHandler): void;
  /** Ends every connection and every request in flight (as UND_ERR_DESTROYED). */
  destroy(): Promise<void>;
}

/**
 * One undici Pool per origin, kept here instead of in an undici Agent. undici 7's Agent drops an
 * origin's pool whenever its last socket closes and counts later disconnects of the dropped
 * pool against its successor, so after one receiver closes a connection every delivery to it
 * opens a new one (nodejs/undici#5022, fixed in undici 8 only). A pool here lives until it is
 * idle and the origins are many, or the transport closes.
 */
export function createOriginPools(options: Pool.Options): OriginPools {
  const pools = new Map<string, Pool>();

  function dropIdle(): void {
    for (const [origin, pool] of pools) {
      const { connected, pending, running } = pool.stats;
      if (connected + pending + running > 0) continue;
      pools.delete(origin);
      void pool.close();
    }
  }

  return {
    dispatch(dispatchOptions, handler) {
      let pool = pools.get(dispatchOptions.origin);
      if (pool === undefined) {
        if (pools.size >= IDLE_CHECK_ABOVE) dropIdle();
        pool = new Pool(dispatchOptions.origin, options);
        pools.set(dispatchOptions.origin, pool);
      }
      pool.dispatch(dispatchOptions, handler);
    },
    async destroy() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((pool) => pool.destroy()));
    },
  };
}

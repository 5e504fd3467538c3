import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';

/** Pages refresh by polling the API (a list is a view of what has committed, not a feed). */
export const POLL_MS = 3000;

export interface Polled<T> {
  data: T | undefined;
  error: unknown;
  /** Loads again now (after an action changed something). */
  reload(): void;
}

/**
 * Loads with `load` now and every POLL_MS after each answer, never two loads at once; `key`
 * names what is loaded, and a new key starts afresh (no stale data from the previous
 * record). A hidden tab skips its turns. A failed load keeps the last data with the error.
 */
export function usePoll<T>(key: string, load: () => Promise<T>, everyMs = POLL_MS): Polled<T> {
  const [state, setState] = useState<{ key: string; data?: T; error?: unknown }>({ key });
  const loadRef = useRef(load);
  loadRef.current = load;
  const nowRef = useRef<() => void>(() => {});

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let running = false;
    // A reload asked for while a load is out: that load may predate the change, so load again.
    let again = false;
    setState({ key });
    // A record that is not there (404) will not come: polling for it stops until a reload.
    let gone = false;
    const tick = async () => {
      clearTimeout(timer);
      if (running) {
        again = true;
        return;
      }
      if (document.hidden) {
        timer = setTimeout(tick, everyMs);
        return;
      }
      running = true;
      gone = false;
      try {
        const data = await loadRef.current();
        if (!stopped) setState({ key, data });
      } catch (error) {
        gone = error instanceof ApiError && error.status === 404;
        if (!stopped) setState((s) => ({ key, data: s.key === key ? s.data : undefined, error }));
      } finally {
        running = false;
        if (!stopped && (again || !gone)) timer = setTimeout(tick, again ? 0 : everyMs);
        again = false;
      }
    };
    nowRef.current = () => void tick();
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [key, everyMs]);

  const reload = useCallback(() => nowRef.current(), []);
  const current = state.key === key ? state : { key };
  return { data: current.data, error: current.error, reload };
}

export interface Action {
  busy: boolean;
  /** What the last action reported, for the page's status line. */
  message: ComponentChildren;
  error: unknown;
  run(work: () => Promise<ComponentChildren>): Promise<void>;
}

/** One button's request at a time, with its outcome as a message or an error. */
export function useAction(): Action {
  const [state, setState] = useState<{ busy: boolean; message: ComponentChildren; error: unknown }>({ busy: false, message: null, error: null });
  const run = useCallback(async (work: () => Promise<ComponentChildren>) => {
    setState({ busy: true, message: null, error: null });
    try {
      setState({ busy: false, message: await work(), error: null });
    } catch (error) {
      setState({ busy: false, message: null, error });
    }
  }, []);
  return { ...state, run };
}

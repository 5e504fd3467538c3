import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { localTime } from '../format.js';

type Tone = 'good' | 'bad' | 'busy' | 'held' | 'off';

/*
 * Every state is shown as a word; the colour and the symbol only repeat it (the symbol is
 * hidden from screen readers, which read the word).
 */
const STATES: Record<string, [label: string, tone: Tone, symbol: string]> = {
  // deliveries
  pending: ['pending', 'busy', '…'],
  succeeded: ['succeeded', 'good', '✓'],
  failed: ['failed', 'bad', '✗'],
  cancelled: ['cancelled', 'off', '⊘'],
  // executions and tasks
  RUNNING: ['running', 'busy', '▶'],
  SUCCESS: ['success', 'good', '✓'],
  ERROR: ['error', 'bad', '✗'],
  CANCELLED: ['cancelled', 'off', '⊘'],
  PAUSED: ['paused', 'held', '⏸'],
  SKIPPED: ['skipped', 'off', '↷'],
  IDLE: ['idle', 'off', '·'],
  WAITING: ['waiting', 'held', '…'],
  DELAYED: ['delayed', 'held', '…'],
  // listener health
  enabled: ['enabled', 'good', '✓'],
  ok: ['ok', 'good', '✓'],
  open: ['circuit open', 'bad', '✗'],
  half_open: ['circuit half-open (probing)', 'held', '◐'],
  disabled: ['disabled', 'off', '⊘'],
  no_transport: ['no transport enabled', 'bad', '!'],
};

export function StateText({ state }: { state: string }) {
  const [label, tone, symbol] = STATES[state] ?? [state, 'off', '·'];
  return (
    <span class={`state state-${tone}`}>
      <span aria-hidden="true">{symbol} </span>
      {label}
    </span>
  );
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return `The relay could not be reached: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

export function ErrorNotice({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="notice notice-error" role="alert">
      {errorMessage(error)}
    </p>
  );
}

/** The outcome of the page's last action, announced politely. */
export function StatusLine({ message, error }: { message: ComponentChildren; error: unknown }) {
  return (
    <div class="status-line" role="status" aria-live="polite">
      {message ? <p class="notice notice-ok">{message}</p> : null}
      {error ? <p class="notice notice-error">{errorMessage(error)}</p> : null}
    </div>
  );
}

/** A moment in local time; `ms` for attempts, which follow each other within a second. */
export function Time({ iso, ms = false }: { iso: string | null | undefined; ms?: boolean }) {
  if (!iso) return <span>—</span>;
  return (
    <time dateTime={iso} title={iso}>
      {localTime(iso, { ms })}
    </time>
  );
}

/** The page's heading; a new page takes the focus there, so keyboard and screen reader users start at the top. */
export function PageTitle({ title, children }: { title: string; children?: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · callback-relay`;
  }, [title]);
  useEffect(() => {
    ref.current?.focus({ preventScroll: true });
  }, []);
  return (
    <header class="page-header">
      <h1 tabIndex={-1} ref={ref}>
        {title}
      </h1>
      {children}
    </header>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>;
}

/** Cursor paging: the API gives only the next cursor, so the previous ones are kept here. */
export function usePages(key: string) {
  const [state, setState] = useState<{ key: string; cursors: string[] }>({ key, cursors: [] });
  const cursors = state.key === key ? state.cursors : [];
  return {
    cursor: cursors.at(-1),
    page: cursors.length + 1,
    next: (cursor: string) => setState({ key, cursors: [...cursors, cursor] }),
    previous: () => setState({ key, cursors: cursors.slice(0, -1) }),
  };
}

export function Pager({ pages, nextCursor, label }: { pages: ReturnType<typeof usePages>; nextCursor: string | null | undefined; label: string }) {
  if (pages.page === 1 && !nextCursor) return null;
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" disabled={pages.page === 1} onClick={pages.previous}>
        Previous page
      </button>
      <span>Page {pages.page}</span>
      <button type="button" disabled={!nextCursor} onClick={() => nextCursor && pages.next(nextCursor)}>
        Next page
      </button>
    </nav>
  );
}

export function Code({ value }: { value: string }) {
  return <code class="id">{value}</code>;
}

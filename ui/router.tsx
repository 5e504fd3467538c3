import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/*
 * Path routing under /ui: every page has an address that can be bookmarked, shared and
 * opened in a new tab (the relay answers index.html for any path under /ui). Links are real
 * <a href> elements; a plain click is turned into a history push instead of a page load.
 */

export const BASE = '/ui';
const NAVIGATED = 'relay-navigate';

export interface Route {
  /** The path below /ui, without a trailing slash: `/listeners/01J…`; `/` for /ui itself. */
  path: string;
  query: URLSearchParams;
}

function currentRoute(): Route {
  const below = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return { path: below.replace(/\/+$/, '') || '/', query: new URLSearchParams(location.search) };
}

/** `to` is a path below /ui, with its query if any. */
export function navigate(to: string, { replace = false } = {}): void {
  history[replace ? 'replaceState' : 'pushState'](null, '', BASE + to);
  dispatchEvent(new Event(NAVIGATED));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    addEventListener('popstate', update);
    addEventListener(NAVIGATED, update);
    return () => {
      removeEventListener('popstate', update);
      removeEventListener(NAVIGATED, update);
    };
  }, []);
  return route;
}

/** The `:name` segments of `pattern` if `path` matches it. */
export function matchPath(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}

export function Link({ to, children, current, class: className }: { to: string; children: ComponentChildren; current?: boolean; class?: string }) {
  return (
    <a
      href={BASE + to}
      class={className}
      aria-current={current ? 'page' : undefined}
      onClick={(e) => {
        // Let the browser handle new tabs and windows.
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(to);
      }}
    >
      {children}
    </a>
  );
}

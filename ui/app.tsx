import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { forgetToken, onUnauthorized, storedToken } from './api.js';
import { PageTitle } from './components/common.js';
import { POLL_MS } from './hooks.js';
import { DeliveryPage } from './pages/delivery.js';
import { EventPage, EventsPage } from './pages/events.js';
import { ExecutionPage } from './pages/execution.js';
import { ExecutionsPage } from './pages/executions.js';
import { ListenerPage } from './pages/listener.js';
import { ListenersPage } from './pages/listeners.js';
import { TokenPage } from './pages/token.js';
import { Link, matchPath, useRoute, type Route } from './router.js';

type Render = (params: Record<string, string>, query: URLSearchParams) => JSX.Element;

const PAGES: Array<[pattern: string, section: string, render: Render]> = [
  ['/', 'listeners', () => <ListenersPage />],
  ['/listeners', 'listeners', () => <ListenersPage />],
  ['/listeners/:id', 'listeners', (p) => <ListenerPage id={p.id} />],
  ['/deliveries/:id', 'listeners', (p) => <DeliveryPage id={p.id} />],
  ['/events', 'events', (_p, q) => <EventsPage params={q} />],
  ['/events/:id', 'events', (p) => <EventPage id={p.id} />],
  ['/executions', 'executions', (_p, q) => <ExecutionsPage params={q} />],
  ['/executions/:id', 'executions', (p) => <ExecutionPage id={p.id} />],
];

const SECTIONS = [
  { section: 'listeners', to: '/listeners', label: 'Listeners' },
  { section: 'events', to: '/events', label: 'Event log' },
  { section: 'executions', to: '/executions', label: 'Executions' },
];

function pageFor(route: Route): { section: string | null; page: JSX.Element } {
  for (const [pattern, section, render] of PAGES) {
    const params = matchPath(pattern, route.path);
    if (params) return { section, page: render(params, route.query) };
  }
  return {
    section: null,
    page: (
      <>
        <PageTitle title="No such page" />
        <p>
          Nothing lives at this address. Go to the <Link to="/listeners">listeners</Link>.
        </p>
      </>
    ),
  };
}

export function App() {
  const [signedIn, setSignedIn] = useState(() => storedToken() !== null);
  const [refusal, setRefusal] = useState<string | null>(null);
  const route = useRoute();

  useEffect(
    () =>
      onUnauthorized((err) => {
        forgetToken();
        setRefusal(`${err.message}. The relay no longer accepts the token this tab kept; paste a valid one.`);
        setSignedIn(false);
      }),
    [],
  );

  if (!signedIn) {
    return (
      <TokenPage
        reason={refusal}
        onSignedIn={() => {
          setRefusal(null);
          setSignedIn(true);
        }}
      />
    );
  }

  const { section, page } = pageFor(route);
  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="site-header">
        <span class="brand">callback-relay</span>
        <nav aria-label="Main">
          <ul>
            {SECTIONS.map((s) => (
              <li key={s.section}>
                <Link to={s.to} current={s.section === section}>
                  {s.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <button
          type="button"
          class="sign-out"
          onClick={() => {
            forgetToken();
            setSignedIn(false);
          }}
        >
          Forget token
        </button>
      </header>
      {/* A new path is a new page: its state and polls start afresh and its heading takes the focus.
          A new query (a filter) keeps the page, and the focus where it is. */}
      <main id="main" tabIndex={-1} key={route.path}>
        {page}
      </main>
      <footer class="site-footer muted">
        Refreshes every {POLL_MS / 1000} s. Everything here comes from the REST API; see <a href="/openapi.yaml">openapi.yaml</a>.
      </footer>
    </>
  );
}

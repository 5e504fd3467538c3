import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, storeToken } from '../api.js';
import { errorMessage } from '../components/common.js';

/** Why the form is shown again: the API refused the stored token. */
export function TokenPage({ onSignedIn, reason }: { onSignedIn(): void; reason: string | null }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(reason);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    document.title = 'API token · callback-relay';
    input.current?.focus();
  }, []);

  async function submit(e: Event) {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setError('Paste a token first.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // Any read proves the token; the smallest one will do.
      await call('GET', '/listeners?limit=1', { token: value });
      storeToken(value);
      onSignedIn();
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? `${err.message}. The relay does not know this token: check that it was copied whole.`
          : errorMessage(err),
      );
      input.current?.focus();
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" class="token-page">
      <h1>callback-relay dashboard</h1>
      <form onSubmit={submit} aria-describedby="token-help">
        <label for="token">API token</label>
        <input
          id="token"
          ref={input}
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={error ? 'token-error' : undefined}
          onInput={(e) => setToken(e.currentTarget.value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Checking…' : 'Use this token'}
        </button>
        {error ? (
          <p id="token-error" class="notice notice-error" role="alert">
            {error}
          </p>
        ) : null}
      </form>
      <p id="token-help" class="muted">
        A project's bearer token: one of <code>RELAY_TOKENS</code>, or the <code>admin.token</code> file the relay wrote to its
        data folder on first start. It is kept in this browser tab only (sessionStorage) and sent only to this relay's API.
      </p>
    </main>
  );
}

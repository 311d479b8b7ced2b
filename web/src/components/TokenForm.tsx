// With auth on, the page asks for a token: a password field labelled `Token` (SPEC §11).
import { useState } from 'preact/hooks';
import { t } from '../i18n.ts';

export function TokenForm({ onToken, error }: { onToken: (token: string) => Promise<void>; error: string | null }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!token.trim()) return;
    setBusy(true);
    try {
      await onToken(token.trim());
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="token-page">
      <form class="token-form" onSubmit={(event) => void submit(event)}>
        <h1>{t.title}</h1>
        <p>{t.tokenTitle}</p>
        <label class="field">
          <span>{t.token}</span>
          <input
            type="password"
            autoComplete="current-password"
            value={token}
            onInput={(event) => setToken(event.currentTarget.value)}
            required
          />
        </label>
        <p class="hint">{t.tokenHelp}</p>
        {error !== null && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {t.signIn}
        </button>
      </form>
    </main>
  );
}

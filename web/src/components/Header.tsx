// The page's header: who is signed in, the live connection, and `Pause updates` (SPEC §11).
import { useEffect, useState } from 'preact/hooks';
import type { Api, ConnectionState } from '../api.ts';
import { useStore } from '../hooks.ts';
import { t } from '../i18n.ts';
import type { Role } from '../model.ts';
import type { JobStore } from '../store.ts';

export function Header({
  api,
  store,
  me,
  onSignOut,
}: {
  api: Api;
  store: JobStore;
  me: { name: string; role: Role };
  onSignOut: (() => void) | null;
}) {
  useStore(store);
  const [connection, setConnection] = useState<ConnectionState>('connecting');
  useEffect(() => api.onState(setConnection), [api]);
  return (
    <header class="top">
      <a class="brand" href="#/">
        {t.title}
      </a>
      <span class={`connection connection-${connection}`} role="status">
        {connection === 'live' ? t.live : connection === 'connecting' ? t.connecting : t.offline}
      </span>
      <label class="switch">
        <input type="checkbox" role="switch" checked={store.held} onChange={(event) => store.hold(event.currentTarget.checked)} />
        <span>{t.pauseUpdates}</span>
      </label>
      {store.held && store.waiting > 0 && <span class="waiting">{t.held(store.waiting)}</span>}
      <span class="spacer" />
      <a href="graphql">{t.graphiql}</a>
      <span class="who">{t.signedInAs(me.name, me.role)}</span>
      {onSignOut && (
        <button type="button" onClick={onSignOut}>
          {t.signOut}
        </button>
      )}
    </header>
  );
}

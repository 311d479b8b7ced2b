// The dashboard (SPEC §11): who the token is (`Query.me`), a token form when the service needs
// one, then the job list or a job's page, by the location's hash.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Api, ApiError, storedToken, storeToken } from './api.ts';
import { CONNECTORS, ME } from './documents.ts';
import { useRoute } from './hooks.ts';
import { t } from './i18n.ts';
import { ALL, canOperate, type ListQuery, type Role } from './model.ts';
import { JobStore } from './store.ts';
import { Header } from './components/Header.tsx';
import { JobList } from './components/JobList.tsx';
import { JobPage } from './components/JobPage.tsx';
import { TokenForm } from './components/TokenForm.tsx';

interface Session {
  api: Api;
  me: { name: string; role: Role };
}

type Phase =
  { kind: 'starting' } | { kind: 'token'; error: string | null } | { kind: 'failed'; error: string } | { kind: 'in'; session: Session };

/** Asks `me` with a token (or none): who it is, or why not. */
async function signIn(token: string | null): Promise<Phase> {
  const api = new Api(token);
  // The list is asked for at once: with auth off, or a good token, its answer is not waited for twice.
  JobStore.prefetch(api);
  try {
    const { me } = await api.request<{ me: Session['me'] }>(ME);
    return { kind: 'in', session: { api, me } };
  } catch (error) {
    if (error instanceof ApiError && error.code === 'UNAUTHENTICATED')
      return { kind: 'token', error: token === null ? null : `${t.tokenRefused} ${error.message}` };
    return { kind: 'failed', error: error instanceof Error ? error.message : String(error) };
  }
}

export function App() {
  const [phase, setPhase] = useState<Phase>({ kind: 'starting' });
  useEffect(() => {
    void signIn(storedToken()).then(setPhase);
  }, []);

  switch (phase.kind) {
    case 'starting':
      return <p class="starting">{t.loading}</p>;
    case 'failed':
      return (
        <p role="alert" class="error">
          {phase.error}
        </p>
      );
    case 'token':
      return (
        <TokenForm
          error={phase.error}
          onToken={async (token) => {
            const next = await signIn(token);
            if (next.kind === 'in') storeToken(token);
            setPhase(next);
          }}
        />
      );
    case 'in':
      return (
        <Dashboard
          session={phase.session}
          onSignOut={
            phase.session.api.token === null
              ? null
              : () => {
                  storeToken(null);
                  setPhase({ kind: 'token', error: null });
                }
          }
          onRefused={() => {
            storeToken(null);
            setPhase({ kind: 'token', error: t.tokenGone });
          }}
        />
      );
  }
}

function Dashboard({ session, onSignOut, onRefused }: { session: Session; onSignOut: (() => void) | null; onRefused: () => void }) {
  const { api, me } = session;
  const store = useMemo(() => new JobStore(api), [api]);
  const route = useRoute();
  const [query, setQuery] = useState<ListQuery>(ALL);
  const [connectors, setConnectors] = useState<string[]>([]);
  useEffect(() => api.onUnauthorized(onRefused), [api]);
  useEffect(() => {
    store.start();
    void api.request<{ connectors: { id: string }[] }>(CONNECTORS).then(
      ({ connectors }) => setConnectors(connectors.map((c) => c.id)),
      () => {},
    );
    return () => {
      store.stop();
      api.dispose();
    };
  }, [store]);
  const operate = canOperate(me.role);
  return (
    <>
      <Header api={api} store={store} me={me} onSignOut={onSignOut} />
      {!operate && <p class="hint viewer">{t.onlyViewer}</p>}
      {route.page === 'job' ? (
        <JobPage api={api} store={store} id={route.id} canOperate={operate} />
      ) : (
        <JobList api={api} store={store} query={query} onQuery={setQuery} canOperate={operate} connectors={connectors} />
      )}
    </>
  );
}

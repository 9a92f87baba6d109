/**
 * The console's shell: who is signed in (or the sign-in form), the header, and the screen the
 * location's hash names (`#/` the plant overview, `#/edges/ID` an edge).
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { createApi, type SessionInfo } from './api.js';
import { SignIn } from './sign-in.js';
import { Overview } from './overview.js';
import { EdgePage } from './edge-page.js';
import { RolloutsPage } from './rollouts-page.js';
import { ModelsPage } from './models-page.js';
import { AdminPage, canAdmin } from './admin-page.js';
import { LinePage } from './line-page.js';
import { useFleet } from './live.js';
import { ReviewPage } from './review-page.js';
import { AlertsPage, AlertsNavLink } from './alerts-page.js';
import type { Api } from './api.js';

type Route =
  | { screen: 'overview' }
  | { screen: 'edge'; id: string }
  | { screen: 'rollouts'; id: string | null }
  | { screen: 'models'; version?: { name: string; version: string } }
  | { screen: 'admin' }
  | { screen: 'line'; line: string; query: string }
  | { screen: 'review'; line: string | null }
  | { screen: 'alerts' }
  | { screen: 'unknown'; hash: string };

function parseHash(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  if (path === '/') return { screen: 'overview' };
  if (path === '/admin') return { screen: 'admin' };
  if (path === '/alerts') return { screen: 'alerts' };
  const edge = /^\/edges\/([^/]+)$/.exec(path);
  if (edge) return { screen: 'edge', id: decodeURIComponent(edge[1]!) };
  const rollouts = /^\/rollouts(?:\/([^/]+))?$/.exec(path);
  if (rollouts) return { screen: 'rollouts', id: rollouts[1] ? decodeURIComponent(rollouts[1]) : null };
  if (path === '/models') return { screen: 'models' };
  const mv = /^\/models\/([^/]+)\/([^/]+)$/.exec(path);
  if (mv) return { screen: 'models', version: { name: decodeURIComponent(mv[1]!), version: decodeURIComponent(mv[2]!) } };
  const line = /^\/lines\/([^/?]+)(?:\?(.*))?$/.exec(path);
  if (line) return { screen: 'line', line: decodeURIComponent(line[1]!), query: line[2] ?? '' };
  const review = /^\/review(?:\/([^/]+))?$/.exec(path);
  if (review) return { screen: 'review', line: review[1] ? decodeURIComponent(review[1]) : null };
  return { screen: 'unknown', hash: path };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

export function App() {
  // undefined: still asking the fleet; null: signed out.
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const api = useMemo(
    () =>
      createApi(() => {
        setSession(null);
        setNotice('Your session ended. Sign in again.');
      }),
    [],
  );
  useEffect(() => {
    api.me().then(setSession, (err: Error) => {
      setSession(null);
      setNotice(`The fleet did not answer: ${err.message}`);
    });
  }, [api]);

  if (session === undefined) return <p class="loading">Connecting to the fleet…</p>;
  if (session === null)
    return (
      <SignIn
        api={api}
        notice={notice}
        onSignedIn={(s) => {
          setNotice(null);
          setSession(s);
        }}
      />
    );
  return <SignedIn api={api} session={session} onSignedOut={() => setSession(null)} />;
}

function SignedIn({ api, session, onSignedOut }: { api: Api; session: SessionInfo; onSignedOut: () => void }) {
  const route = useRoute();
  const fleet = useFleet(api);
  const signOut = () => api.signOut().finally(onSignedOut);
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href="#/">
          Osprey
        </a>
        <nav>
          <a href="#/" class={route.screen === 'overview' ? 'current' : ''}>
            Plant overview
          </a>
          {session.permissions.includes('results:read') && (
            <a href="#/review" class={route.screen === 'review' ? 'current' : ''}>
              Review
            </a>
          )}
          <AlertsNavLink api={api} fleet={fleet} current={route.screen === 'alerts'} />
          <a href="#/rollouts" class={route.screen === 'rollouts' ? 'current' : ''}>
            Rollouts
          </a>
          <a href="#/models" class={route.screen === 'models' ? 'current' : ''}>
            Models
          </a>
          {canAdmin(session) && (
            <a href="#/admin" class={route.screen === 'admin' ? 'current' : ''}>
              Admin
            </a>
          )}
        </nav>
        <span class={`link-state ${fleet.connected ? 'live' : 'down'}`} data-testid="link-state">
          {fleet.connected ? 'Live' : fleet.edges ? 'Reconnecting…' : 'Connecting…'}
        </span>
        <span class="who" data-testid="who">
          <strong>{session.user.username}</strong> <span class="role">{session.role}</span>
        </span>
        <button type="button" class="quiet" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {route.screen === 'overview' && <Overview fleet={fleet} />}
        {route.screen === 'rollouts' && <RolloutsPage api={api} session={session} fleet={fleet} id={route.id} />}
        {route.screen === 'line' && <LinePage key={`${route.line}?${route.query}`} api={api} session={session} fleet={fleet} line={route.line} query={route.query} />}
        {route.screen === 'edge' && <EdgePage api={api} fleet={fleet} id={route.id} session={session} />}
        {route.screen === 'models' && <ModelsPage api={api} session={session} {...(route.version && { version: route.version })} />}
        {route.screen === 'admin' && <AdminPage api={api} session={session} />}
        {route.screen === 'alerts' && <AlertsPage api={api} session={session} fleet={fleet} />}
        {route.screen === 'review' && <ReviewPage api={api} session={session} fleet={fleet} line={route.line} />}
        {route.screen === 'unknown' && (
          <p class="empty">
            Nothing here ({route.hash}). <a href="#/">Back to the plant overview</a>
          </p>
        )}
      </main>
    </div>
  );
}

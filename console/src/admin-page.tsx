/**
 * Admin (`#/admin`): users and roles (users:admin), everyone's API tokens (tokens:admin),
 * enrollment tokens for new edges and edge credentials (edges:enroll), and the audit log
 * (audit:read). Each part shows only to whoever holds its permission; the API refuses the rest
 * anyway. Secrets (a new API token, an enrollment token) are shown once, when they are made.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import { clock } from './format.js';
import { Webhooks } from './admin-webhooks.js';

/** Permissions that open the Admin screen (any one of them). */
export const ADMIN_PERMISSIONS = ['users:admin', 'tokens:admin', 'edges:enroll', 'audit:read', 'alerts:admin'] as const;

export function canAdmin(session: SessionInfo): boolean {
  return ADMIN_PERMISSIONS.some((p) => session.permissions.includes(p));
}

const ROLES = ['admin', 'release-manager', 'operator', 'inspector', 'viewer'] as const;

interface User {
  username: string;
  role: string;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}
interface Token {
  id: string;
  username: string | null;
  name: string;
  role: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
}
interface Enrollment {
  id: string;
  edgeId: string | null;
  line: string | null;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  usedByEdge: string | null;
}
interface Credential {
  id: string;
  edgeId: string;
  line: string | null;
  createdAt: number;
  revokedAt: number | null;
}
interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  source: string;
  outcome: string;
}

const value = (e: Event) => (e.target as HTMLInputElement | HTMLSelectElement).value;

/** Runs a change, then `reload`; a refusal is shown as the part's one-line error. */
function useAction(reload: () => void): [(what: () => Promise<unknown>) => Promise<boolean>, string | null, boolean] {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async (what: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await what();
      reload();
      return true;
    } catch (err) {
      setError((err as Error).message);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return [run, error, busy];
}

/** GETs `path` now and whenever `reload` is called. */
function useList<T>(api: Api, path: string): [T | null, string | null, () => void] {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let gone = false;
    api.get<T>(path).then(
      (r) => !gone && (setData(r), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, path, n]);
  return [data, error, () => setN((x) => x + 1)];
}

export function AdminPage({ api, session }: { api: Api; session: SessionInfo }) {
  if (!canAdmin(session)) return <p class="empty">Admin is for administrators. <a href="#/">Back to the plant overview</a></p>;
  const has = (p: string) => session.permissions.includes(p as never);
  return (
    <section class="admin-page">
      <h1>Admin</h1>
      {has('users:admin') && <Users api={api} me={session.user.username} />}
      <Tokens api={api} session={session} />
      {has('edges:enroll') && <Enrollments api={api} />}
      {has('edges:enroll') && <Credentials api={api} />}
      {has('alerts:admin') && <Webhooks api={api} />}
      {has('audit:read') && <Audit api={api} />}
    </section>
  );
}

function Secret({ title, secret, command, onDone }: { title: string; secret: string; command?: string; onDone: () => void }) {
  const [copied, setCopied] = useState<string | null>(null);
  const copy = (text: string, what: string) => void navigator.clipboard?.writeText(text).then(() => setCopied(what), () => setCopied(null));
  return (
    <div class="secret" role="alert" data-testid="secret">
      <strong>{title}</strong> It is shown this once; the fleet keeps only its hash.
      <code class="token">{secret}</code>
      <button type="button" class="small" onClick={() => copy(secret, 'token')}>
        Copy token
      </button>
      {command && (
        <>
          <p>On the edge, as the user that runs the agent (add --config EDGE.json to put the credential in the edge's dataDir):</p>
          <code class="command" data-testid="enroll-command">
            {command}
          </code>
          <button type="button" class="small" onClick={() => copy(command, 'command')}>
            Copy command
          </button>
        </>
      )}
      {copied && <span class="muted"> Copied the {copied}.</span>}
      <button type="button" class="small quiet-dark" onClick={onDone}>
        Done
      </button>
    </div>
  );
}

function Users({ api, me }: { api: Api; me: string }) {
  const [data, loadError, reload] = useList<{ users: User[] }>(api, '/api/users');
  const [run, error, busy] = useAction(reload);
  const [form, setForm] = useState({ username: '', password: '', role: 'viewer' });
  const [resetting, setResetting] = useState<string | null>(null);
  const [password, setPassword] = useState('');
  const [notice, setNotice] = useState<string | null>(null);
  const path = (u: string) => `/api/users/${encodeURIComponent(u)}`;
  return (
    <section class="admin-part" data-part="users">
      <h2>Users</h2>
      {(error ?? loadError) && <p class="error">{error ?? loadError}</p>}
      {notice && <p class="notice">{notice}</p>}
      <table>
        <thead>
          <tr>
            <th>User</th>
            <th>Role</th>
            <th>State</th>
            <th>Since</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data?.users.map((u) => (
            <tr key={u.username} data-user={u.username} class={u.disabled ? 'disabled' : ''}>
              <td>
                {u.username}
                {u.username === me && <span class="muted"> (you)</span>}
              </td>
              <td>
                <select aria-label={`Role of ${u.username}`} value={u.role} disabled={busy} onChange={(e) => void run(() => api.send('PATCH', path(u.username), { role: value(e) }))}>
                  {ROLES.map((r) => (
                    <option key={r} value={r}>
                      {r}
                    </option>
                  ))}
                </select>
              </td>
              <td>{u.disabled ? 'disabled' : 'enabled'}</td>
              <td class="seen">{clock(u.createdAt)}</td>
              <td class="actions">
                <button type="button" class="small plain" disabled={busy} onClick={() => void run(() => api.send('PATCH', path(u.username), { disabled: !u.disabled }))}>
                  {u.disabled ? 'Enable' : 'Disable'}
                </button>
                <button type="button" class="small plain" disabled={busy} onClick={() => (setResetting(u.username), setPassword(''))}>
                  Reset password
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {resetting && (
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const who = resetting;
            void run(() => api.send('PUT', `${path(who)}/password`, { password })).then((ok) => ok && (setResetting(null), setNotice(`${who}'s password was reset; their sessions ended.`)));
          }}
        >
          <label>
            New password for {resetting}
            <input type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(value(e))} />
          </label>
          <button type="submit" disabled={busy || password.length === 0}>
            Set password
          </button>
          <button type="button" class="small plain" onClick={() => setResetting(null)}>
            Cancel
          </button>
        </form>
      )}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void run(() => api.post('/api/users', form)).then((ok) => ok && (setNotice(`${form.username} was added as ${form.role}.`), setForm({ username: '', password: '', role: 'viewer' })));
        }}
      >
        <label>
          Username
          <input name="new-username" value={form.username} onInput={(e) => setForm({ ...form, username: value(e) })} />
        </label>
        <label>
          Password
          <input name="new-password" type="password" autocomplete="new-password" value={form.password} onInput={(e) => setForm({ ...form, password: value(e) })} />
        </label>
        <label>
          Role
          <select name="new-role" aria-label="Role" value={form.role} onChange={(e) => setForm({ ...form, role: value(e) })}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={busy || form.username === '' || form.password === ''}>
          Add user
        </button>
      </form>
    </section>
  );
}

function Tokens({ api, session }: { api: Api; session: SessionInfo }) {
  const [data, loadError, reload] = useList<{ tokens: Token[] }>(api, '/api/tokens');
  const [run, error, busy] = useAction(reload);
  const [form, setForm] = useState({ name: '', role: session.role as string, days: '90' });
  const [secret, setSecret] = useState<string | null>(null);
  const all = session.permissions.includes('tokens:admin');
  return (
    <section class="admin-part" data-part="tokens">
      <h2>API tokens {all ? <span class="muted">everyone's</span> : <span class="muted">yours</span>}</h2>
      {(error ?? loadError) && <p class="error">{error ?? loadError}</p>}
      {secret && <Secret title="New API token." secret={secret} onDone={() => setSecret(null)} />}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Owner</th>
            <th>Role</th>
            <th>Expires</th>
            <th>Last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data?.tokens.map((t) => (
            <tr key={t.id} data-token={t.name} class={t.revokedAt ? 'disabled' : ''}>
              <td>{t.name}</td>
              <td>{t.username ?? '–'}</td>
              <td>{t.role}</td>
              <td class="seen">{t.expiresAt ? clock(t.expiresAt) : 'never'}</td>
              <td class="seen">{t.lastUsedAt ? clock(t.lastUsedAt) : '–'}</td>
              <td class="actions">
                {t.revokedAt ? (
                  <span class="muted">revoked {clock(t.revokedAt)}</span>
                ) : (
                  <button type="button" class="small danger" disabled={busy} onClick={() => confirm(`Revoke the token "${t.name}"?`) && void run(() => api.send('DELETE', `/api/tokens/${t.id}`))}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void run(async () => {
            const r = await api.post<{ token: string }>('/api/tokens', { name: form.name, role: form.role, expiresInDays: Number(form.days) });
            setSecret(r.token);
            setForm({ ...form, name: '' });
          });
        }}
      >
        <label>
          Token name
          <input name="token-name" value={form.name} maxLength={100} onInput={(e) => setForm({ ...form, name: value(e) })} />
        </label>
        <label>
          Role
          <select name="token-role" aria-label="Token role" value={form.role} onChange={(e) => setForm({ ...form, role: value(e) })}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <label>
          Days valid
          <input name="token-days" type="number" min={1} max={3650} value={form.days} onInput={(e) => setForm({ ...form, days: value(e) })} />
        </label>
        <button type="submit" disabled={busy || form.name.trim() === ''}>
          Create token
        </button>
      </form>
    </section>
  );
}

function Enrollments({ api }: { api: Api }) {
  const [data, loadError, reload] = useList<{ tokens: Enrollment[] }>(api, '/api/enrollment-tokens');
  const [run, error, busy] = useAction(reload);
  const [form, setForm] = useState({ for: 'edge', name: '', minutes: '60' });
  const [made, setMade] = useState<{ token: string; command: string } | null>(null);
  return (
    <section class="admin-part" data-part="enrollment">
      <h2>Enroll an edge</h2>
      {(error ?? loadError) && <p class="error">{error ?? loadError}</p>}
      {made && <Secret title="Enrollment token." secret={made.token} command={made.command} onDone={() => setMade(null)} />}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          const name = form.name.trim();
          void run(async () => {
            const body = { ...(form.for === 'edge' ? { edgeId: name } : { line: name }), ttlSeconds: Math.round(Number(form.minutes) * 60) };
            const r = await api.post<{ token: string }>('/api/enrollment-tokens', body);
            const edgeId = form.for === 'edge' ? name : 'EDGE-ID';
            setMade({ token: r.token, command: `osprey edge enroll --fleet ${location.origin} --token ${r.token} --edge-id ${edgeId}` });
            setForm({ ...form, name: '' });
          });
        }}
      >
        <label>
          For
          <select name="enroll-for" aria-label="For" value={form.for} onChange={(e) => setForm({ ...form, for: value(e) })}>
            <option value="edge">one edge id</option>
            <option value="line">any new edge of a line</option>
          </select>
        </label>
        <label>
          {form.for === 'edge' ? 'Edge id' : 'Line'}
          <input name="enroll-name" value={form.name} onInput={(e) => setForm({ ...form, name: value(e) })} />
        </label>
        <label>
          Valid for (minutes)
          <input name="enroll-minutes" type="number" min={1} max={10080} value={form.minutes} onInput={(e) => setForm({ ...form, minutes: value(e) })} />
        </label>
        <button type="submit" disabled={busy || form.name.trim() === ''}>
          Create enrollment token
        </button>
      </form>
      <table>
        <thead>
          <tr>
            <th>For</th>
            <th>Made by</th>
            <th>Made</th>
            <th>Expires</th>
            <th>Used</th>
          </tr>
        </thead>
        <tbody>
          {data?.tokens.map((t) => (
            <tr key={t.id} data-enrollment={t.edgeId ?? t.line ?? t.id}>
              <td>{t.edgeId ? `edge ${t.edgeId}` : `line ${t.line ?? '?'}`}</td>
              <td>{t.createdBy}</td>
              <td class="seen">{clock(t.createdAt)}</td>
              <td class="seen">{clock(t.expiresAt)}</td>
              <td>{t.usedAt ? `by ${t.usedByEdge ?? '?'} ${clock(t.usedAt)}` : t.expiresAt < Date.now() ? 'expired' : 'not yet'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Credentials({ api }: { api: Api }) {
  const [data, loadError, reload] = useList<{ credentials: Credential[] }>(api, '/api/edge-credentials');
  const [run, error, busy] = useAction(reload);
  return (
    <section class="admin-part" data-part="credentials">
      <h2>Edge credentials</h2>
      {(error ?? loadError) && <p class="error">{error ?? loadError}</p>}
      {data && data.credentials.length === 0 && <p class="muted">No edge is enrolled.</p>}
      {data && data.credentials.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Edge</th>
              <th>Line</th>
              <th>Enrolled</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {data.credentials.map((c) => (
              <tr key={c.id} data-credential={c.edgeId} class={c.revokedAt ? 'disabled' : ''}>
                <td>{c.edgeId}</td>
                <td>{c.line ?? '–'}</td>
                <td class="seen">{clock(c.createdAt)}</td>
                <td class="actions">
                  {c.revokedAt ? (
                    <span class="muted">revoked {clock(c.revokedAt)}</span>
                  ) : (
                    <button
                      type="button"
                      class="small danger"
                      disabled={busy}
                      onClick={() => confirm(`Revoke ${c.edgeId}'s credential? The edge is disconnected at once and must be enrolled again.`) && void run(() => api.send('DELETE', `/api/edges/${encodeURIComponent(c.edgeId)}/credentials`))}
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

const PAGE = 50;

function Audit({ api }: { api: Api }) {
  const [filter, setFilter] = useState({ actor: '', action: '', from: '', to: '' });
  const [applied, setApplied] = useState(filter);
  // Older pages: the beforeId each started at (empty: the newest page).
  const [pages, setPages] = useState<number[]>([]);
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (applied.actor) q.set('actor', applied.actor);
  if (applied.action) q.set('action', applied.action);
  if (applied.from) q.set('from', String(new Date(applied.from).getTime()));
  if (applied.to) q.set('to', String(new Date(applied.to).getTime()));
  const before = pages[pages.length - 1];
  if (before !== undefined) q.set('beforeId', String(before));
  const [data, error, reload] = useList<{ entries: AuditEntry[]; nextBeforeId: number | null }>(api, `/api/audit?${q}`);
  return (
    <section class="admin-part" data-part="audit">
      <h2>Audit log</h2>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          // Filter also reads again: entries made since are shown.
          setApplied(filter);
          setPages([]);
          reload();
        }}
      >
        <label>
          Who
          <input name="audit-actor" placeholder="user:alice" value={filter.actor} onInput={(e) => setFilter({ ...filter, actor: value(e) })} />
        </label>
        <label>
          Action starts with
          <input name="audit-action" placeholder="user." value={filter.action} onInput={(e) => setFilter({ ...filter, action: value(e) })} />
        </label>
        <label>
          From
          <input name="audit-from" type="datetime-local" value={filter.from} onInput={(e) => setFilter({ ...filter, from: value(e) })} />
        </label>
        <label>
          To
          <input name="audit-to" type="datetime-local" value={filter.to} onInput={(e) => setFilter({ ...filter, to: value(e) })} />
        </label>
        <button type="submit">Filter / refresh</button>
      </form>
      {error && <p class="error">{error}</p>}
      {data && data.entries.length === 0 && <p class="muted">No entries.</p>}
      {data && data.entries.length > 0 && (
        <table class="audit">
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>Action</th>
              <th>Target</th>
              <th>From</th>
              <th>Outcome</th>
            </tr>
          </thead>
          <tbody>
            {data.entries.map((a) => (
              <tr key={a.id} data-action={a.action}>
                <td class="seen">{clock(a.ts)}</td>
                <td>{a.actor}</td>
                <td>{a.action}</td>
                <td>{a.target}</td>
                <td>{a.source}</td>
                <td>{a.outcome}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button type="button" class="small" disabled={pages.length === 0} onClick={() => setPages(pages.slice(0, -1))}>
          Newer
        </button>
        <span class="muted">page {pages.length + 1}</span>
        <button type="button" class="small" disabled={!data?.nextBeforeId} onClick={() => data?.nextBeforeId && setPages([...pages, data.nextBeforeId])}>
          Older
        </button>
      </div>
    </section>
  );
}

/**
 * Admin › Webhooks (alerts:admin): where alert notifications go. Add one (URL, format json or
 * chat, alert types and lines to send), send a test, switch it off, delete it, and see its recent
 * deliveries with their attempts and last error. A URL often holds a chat tool's token, so the
 * list shows only its origin.
 */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Api } from './api.js';
import { Confirm } from './confirm.js';
import type { DeliveryView, WebhookView } from '../../fleet-manager/alert-schemas.js';
import { clock } from './format.js';

const value = (e: Event) => (e.target as HTMLInputElement | HTMLSelectElement).value;
const list = (text: string) => text.split(/[\s,]+/).filter(Boolean);
const origin = (url: string) => {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return url;
  }
};

export function Webhooks({ api }: { api: Api }) {
  const [hooks, setHooks] = useState<WebhookView[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  const [form, setForm] = useState({ name: '', url: '', format: 'json', types: '', lines: '' });
  const [open, setOpen] = useState<number | null>(null);
  const [deleting, setDeleting] = useState<WebhookView | null>(null);
  const reload = () => setN((x) => x + 1);
  useEffect(() => {
    let gone = false;
    api.get<{ webhooks: WebhookView[] }>('/api/webhooks').then(
      (r) => !gone && (setHooks(r.webhooks), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, n]);
  const run = async (what: () => Promise<unknown>) => {
    setError(null);
    try {
      await what();
      return true;
    } catch (err) {
      setError((err as Error).message);
      return false;
    } finally {
      reload();
    }
  };

  return (
    <section class="admin-part" data-part="webhooks">
      <h2>Webhooks</h2>
      <p class="muted">
        Alert notifications, POSTed with an <code>x-osprey-delivery</code> id and an Ed25519 <code>x-osprey-signature</code> (the fleet key of{' '}
        <code>GET /api/fleet/public-key</code>); retried until the receiver answers 2xx.
      </p>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void run(() => api.post('/api/webhooks', { name: form.name, url: form.url, format: form.format, types: list(form.types), lines: list(form.lines) })).then(
            (ok) => ok && setForm({ name: '', url: '', format: 'json', types: '', lines: '' }),
          );
        }}
      >
        <label>
          Name
          <input name="webhook-name" required value={form.name} onInput={(e) => setForm({ ...form, name: value(e) })} />
        </label>
        <label>
          URL
          <input name="webhook-url" type="url" required placeholder="https://chat.example.com/hooks/…" value={form.url} onInput={(e) => setForm({ ...form, url: value(e) })} />
        </label>
        <label>
          Format
          <select name="webhook-format" value={form.format} onChange={(e) => setForm({ ...form, format: value(e) })}>
            <option value="json">JSON (event and alert)</option>
            <option value="chat">Chat message ({'{"text": …}'})</option>
          </select>
        </label>
        <label>
          Alert types
          <input name="webhook-types" placeholder="all" value={form.types} onInput={(e) => setForm({ ...form, types: value(e) })} />
        </label>
        <label>
          Lines
          <input name="webhook-lines" placeholder="all" value={form.lines} onInput={(e) => setForm({ ...form, lines: value(e) })} />
        </label>
        <button type="submit">Add webhook</button>
      </form>
      {error && <p class="error">{error}</p>}
      {hooks && hooks.length === 0 && <p class="muted">No webhooks: alerts are only shown here.</p>}
      {hooks && hooks.length > 0 && (
        <table class="webhooks">
          <thead>
            <tr>
              <th>Name</th>
              <th>Sends to</th>
              <th>Format</th>
              <th>Types</th>
              <th>Lines</th>
              <th>Waiting</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {hooks.map((w) => (
              <Fragment key={w.id}>
                <tr data-webhook={w.name} class={w.enabled ? '' : 'disabled'}>
                  <td>{w.name}</td>
                  <td>
                    <code>{origin(w.url)}</code>
                  </td>
                  <td>{w.format}</td>
                  <td>{w.types.length ? w.types.join(', ') : <span class="muted">all</span>}</td>
                  <td>{w.lines.length ? w.lines.join(', ') : <span class="muted">all</span>}</td>
                  <td>{w.pending}</td>
                  <td class="actions">
                    <button type="button" class="small" onClick={() => void run(() => api.post(`/api/webhooks/${w.id}/test`)).then(() => setOpen(w.id))}>
                      Test
                    </button>
                    <button type="button" class="small" onClick={() => void run(() => api.send('PATCH', `/api/webhooks/${w.id}`, { enabled: !w.enabled }))}>
                      {w.enabled ? 'Disable' : 'Enable'}
                    </button>
                    <button type="button" class="small" onClick={() => setOpen(open === w.id ? null : w.id)}>
                      Deliveries
                    </button>
                    <button type="button" class="small danger" onClick={() => setDeleting(w)}>
                      Delete
                    </button>
                  </td>
                </tr>
                {open === w.id && (
                  <tr class="deliveries-row">
                    <td colSpan={7}>
                      <Deliveries api={api} id={w.id} tick={n} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      {deleting && (
        <Confirm
          title={`Delete webhook ${deleting.name}?`}
          confirmLabel="Delete webhook"
          danger
          onConfirm={async () => {
            await api.del(`/api/webhooks/${deleting.id}`);
            // Its deliveries went with it: their panel must not ask for them again.
            if (open === deleting.id) setOpen(null);
            setDeleting(null);
            reload();
          }}
          onClose={() => setDeleting(null)}
        >
          <p>Notifications waiting for it are dropped with it.</p>
        </Confirm>
      )}
    </section>
  );
}

function Deliveries({ api, id, tick }: { api: Api; id: number; tick: number }) {
  const [rows, setRows] = useState<DeliveryView[] | null>(null);
  useEffect(() => {
    let gone = false;
    api.get<{ deliveries: DeliveryView[] }>(`/api/webhooks/${id}/deliveries?limit=20`).then(
      (r) => !gone && setRows(r.deliveries),
      () => undefined,
    );
    return () => {
      gone = true;
    };
  }, [api, id, tick]);
  if (!rows) return null;
  if (rows.length === 0) return <p class="muted">Nothing sent yet.</p>;
  return (
    <table class="deliveries" data-testid={`deliveries-${id}`}>
      <thead>
        <tr>
          <th>Queued</th>
          <th>Event</th>
          <th>Alert</th>
          <th>Status</th>
          <th>Attempts</th>
          <th>Last answer</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((d) => (
          <tr key={d.id} data-delivery={d.status}>
            <td class="seen">{clock(d.createdAt)}</td>
            <td>{d.event}</td>
            <td>{d.alertId ?? '–'}</td>
            <td>
              {d.status}
              {d.status === 'pending' && d.nextAttemptAt !== null && <div class="muted">next {clock(d.nextAttemptAt)}</div>}
            </td>
            <td>{d.attempts}</td>
            <td>{d.lastError ?? (d.lastStatus !== null ? `HTTP ${d.lastStatus}` : '–')}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/**
 * The product managers' dashboard: one self-contained HTML page (no build step, no external
 * assets) that polls the JSON API. Data is inserted with textContent only, never as HTML, because
 * labels and ids come from edges.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root { --ok: #2e7d32; --defect: #c62828; --muted: #6b7280; --line: #e5e7eb; font-family: system-ui, sans-serif; }
body { margin: 0; background: #f6f7f9; color: #111827; }
header { display: flex; gap: 1rem; align-items: center; padding: .8rem 1.5rem; background: #111827; color: #fff; }
header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
header select { font: inherit; }
.pill { padding: .15rem .6rem; border-radius: 1rem; font-size: .8rem; background: var(--muted); }
.pill.ok { background: var(--ok); } .pill.bad { background: var(--defect); }
main { padding: 1rem 1.5rem; }
h2 { font-size: 1rem; color: var(--muted); margin: 1.2rem 0 .6rem; }
#lines { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: .5rem; padding: 1rem; }
.card h3 { margin: 0 0 .2rem; font-size: 1.05rem; display: flex; justify-content: space-between; }
.card h3 a { font-size: .75rem; font-weight: normal; color: var(--muted); }
.rate { font-size: 2rem; font-weight: 600; color: var(--defect); }
.sub { color: var(--muted); font-size: .85rem; }
svg { width: 100%; height: 48px; display: block; margin: .5rem 0; }
table { width: 100%; border-collapse: collapse; font-size: .85rem; }
td, th { text-align: left; padding: .25rem .4rem; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { height: .5rem; background: var(--muted); border-radius: .25rem; min-width: 1px; }
.barcell { width: 40%; }
.dot { display: inline-block; width: .6rem; height: .6rem; border-radius: 50%; background: var(--muted); }
.dot.on { background: var(--ok); }
#error { color: var(--defect); }
#signin { max-width: 20rem; margin: 4rem auto; display: grid; gap: .6rem; }
#signin input, #signin button, header button { font: inherit; padding: .3rem .5rem; }
[hidden] { display: none !important; }
`;

const SCRIPT = `
const RANGES = { '15m': [900e3, '10s'], '1h': [3600e3, '1m'], '24h': [86400e3, '1h'], '7d': [604800e3, '6h'] };
const REFRESH_MS = 5000;
const rangeSel = document.getElementById('range');

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const pct = (r) => (r * 100).toFixed(r >= 0.1 ? 1 : 2) + ' %';
const ago = (ms) => { const s = Math.round((Date.now() - ms) / 1000); return s < 90 ? s + ' s ago' : s < 5400 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago'; };

// Same origin: fetch sends the HttpOnly session cookie; state changes add the session's CSRF token.
let csrf = null;
class SignedOut extends Error {}

async function getJSON(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  const body = await res.json();
  if (res.status === 401) throw new SignedOut(body.message);
  if (!res.ok && !(url === '/health' && body.status)) throw new Error(body.message || res.statusText);
  return body;
}

async function postJSON(url, data) {
  const headers = { accept: 'application/json', 'content-type': 'application/json' };
  if (csrf) headers['x-osprey-csrf'] = csrf;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(data || {}) });
  const body = res.status === 204 ? {} : await res.json();
  if (!res.ok) throw new Error(body.message || res.statusText);
  return body;
}

function showSignIn(message) {
  csrf = null;
  clearTimeout(refresh.timer);
  document.getElementById('signin').hidden = false;
  document.getElementById('main').hidden = true;
  document.getElementById('who').textContent = '';
  document.getElementById('signout').hidden = true;
  document.getElementById('signin-error').textContent = message || '';
}

function signedIn(me) {
  csrf = me.csrfToken;
  document.getElementById('signin').hidden = true;
  document.getElementById('main').hidden = false;
  document.getElementById('who').textContent = me.user.username + ' (' + me.role + ')';
  document.getElementById('signout').hidden = false;
  refresh();
}

document.getElementById('signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  try {
    const me = await postJSON('/api/auth/sign-in', { username: form.username.value, password: form.password.value });
    form.password.value = '';
    signedIn(me);
  } catch (err) {
    document.getElementById('signin-error').textContent = err.message;
  }
});
document.getElementById('signout').addEventListener('click', async () => {
  await postJSON('/api/auth/sign-out').catch(() => undefined);
  showSignIn('Signed out.');
});

function sparkline(buckets, from, to) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 100 40');
  svg.setAttribute('preserveAspectRatio', 'none');
  const maxTotal = Math.max(1, ...buckets.map((b) => b.total));
  const w = Math.max(0.5, 100 / Math.max(1, buckets.length * 1.5));
  for (const b of buckets) {
    const x = ((b.start - from) / (to - from)) * 100;
    const h = (b.total / maxTotal) * 38;
    const hd = (b.defect / maxTotal) * 38;
    for (const [height, color] of [[h, '#cbd5e1'], [hd, '#c62828']]) {
      const r = document.createElementNS(NS, 'rect');
      r.setAttribute('x', String(Math.max(0, Math.min(100 - w, x))));
      r.setAttribute('width', String(w));
      r.setAttribute('y', String(40 - height));
      r.setAttribute('height', String(height));
      r.setAttribute('fill', color);
      svg.append(r);
    }
  }
  svg.append(Object.assign(document.createElementNS(NS, 'title'), { textContent: 'results per bucket (grey) and defects (red)' }));
  return svg;
}

// CSSOM, not a style attribute: the CSP allows only the page's own hashed stylesheet.
function bar(fraction) {
  const b = el('div', { className: 'bar' });
  b.style.width = (fraction * 100).toFixed(1) + '%';
  return b;
}

function lineCard(line, stats, query) {
  const t = stats ? stats.totals : { total: 0, defect: 0, defectRate: 0, byLabel: {} };
  const csv = el('a', { href: '/api/lines/' + encodeURIComponent(line.line) + '/stats?' + query + '&format=csv' }, 'CSV');
  const labels = Object.entries(t.byLabel).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...labels.map((l) => l[1]));
  const rows = labels.map(([label, n]) => el('tr', {},
    el('td', {}, label),
    el('td', { className: 'num' }, n),
    el('td', { className: 'barcell' }, bar(n / max))));
  return el('div', { className: 'card' },
    el('h3', {}, line.line, csv),
    el('div', { className: 'sub' }, line.online + ' of ' + line.edges + ' edges online'),
    el('div', { className: 'rate' }, pct(t.defectRate)),
    el('div', { className: 'sub' }, t.defect + ' defects in ' + t.total + ' inspected'),
    stats ? sparkline(stats.buckets, stats.from, stats.to) : el('div'),
    el('table', {}, el('tr', {}, el('th', {}, 'label'), el('th', { className: 'num' }, 'count'), el('th')), ...rows));
}

function edgeRow(e) {
  const t = e.telemetry;
  const pending = e.lastSeq === null ? '' : Math.max(0, e.lastSeq - e.ackedSeq);
  return el('tr', {},
    el('td', {}, el('span', { className: 'dot' + (e.online ? ' on' : ''), title: e.online ? 'online' : 'offline' })),
    el('td', {}, e.id), el('td', {}, e.line || '—'), el('td', {}, e.cameras.join(', ')),
    el('td', {}, e.activeModel || '—'),
    el('td', { className: 'num' }, t ? t.fps.toFixed(1) : ''),
    el('td', { className: 'num' }, t ? t.latencyP95Ms.toFixed(0) + ' ms' : ''),
    el('td', { className: 'num' }, e.ackedSeq), el('td', { className: 'num' }, pending),
    el('td', {}, ago(e.lastSeen)));
}

async function refresh() {
  try {
    const [range, bucket] = RANGES[rangeSel.value];
    const to = Date.now();
    const query = 'from=' + (to - range) + '&to=' + to + '&bucket=' + bucket;
    const [health, lines, edges] = await Promise.all([getJSON('/health'), getJSON('/api/lines'), getJSON('/api/edges')]);
    // A line known only from an edge without results has no stats yet: show it empty.
    const stats = await Promise.all(lines.lines.map((l) =>
      getJSON('/api/lines/' + encodeURIComponent(l.line) + '/stats?' + query).catch(() => null)));
    const pill = document.getElementById('health');
    pill.textContent = health.status === 'ok' ? 'healthy' : 'degraded';
    pill.className = 'pill ' + (health.status === 'ok' ? 'ok' : 'bad');
    document.getElementById('lines').replaceChildren(...lines.lines.map((l, i) => lineCard(l, stats[i], query)));
    if (lines.lines.length === 0) document.getElementById('lines').append(el('p', { className: 'sub' }, 'No edge has reported yet.'));
    document.getElementById('edges').replaceChildren(...edges.edges.map(edgeRow));
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.getElementById('error').textContent = '';
  } catch (err) {
    if (err instanceof SignedOut) return showSignIn('Your session ended; sign in again.');
    document.getElementById('error').textContent = 'Cannot reach the fleet manager: ' + err.message;
  }
  clearTimeout(refresh.timer);
  refresh.timer = setTimeout(refresh, REFRESH_MS);
}
rangeSel.addEventListener('change', refresh);
getJSON('/api/auth/me').then(signedIn, (err) => showSignIn(err instanceof SignedOut ? '' : err.message));
`;

const sha = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Content-Security-Policy allowing exactly the page's own inline script and style. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha(SCRIPT)}`,
  `style-src ${sha(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The dashboard HTML. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Osprey fleet</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Osprey fleet</h1>
  <span id="updated" class="sub"></span>
  <label>range <select id="range">
    <option value="15m">last 15 min</option>
    <option value="1h" selected>last hour</option>
    <option value="24h">last 24 h</option>
    <option value="7d">last 7 days</option>
  </select></label>
  <span id="health" class="pill">…</span>
  <span id="who" class="sub"></span>
  <button id="signout" type="button" hidden>sign out</button>
</header>
<form id="signin" hidden>
  <h2>Sign in</h2>
  <input name="username" autocomplete="username" placeholder="user name" required>
  <input name="password" type="password" autocomplete="current-password" placeholder="password" required>
  <button type="submit">sign in</button>
  <p id="signin-error" class="sub"></p>
</form>
<main id="main" hidden>
  <p id="error"></p>
  <h2>Lines: defect rate and counts by label</h2>
  <section id="lines"></section>
  <h2>Edges</h2>
  <table>
    <thead><tr><th></th><th>edge</th><th>line</th><th>cameras</th><th>active model</th><th class="num">fps</th>
      <th class="num">p95</th><th class="num">acked seq</th><th class="num">pending</th><th>last seen</th></tr></thead>
    <tbody id="edges"></tbody>
  </table>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * Rollouts: the list (`#/rollouts`), a new one (`#/rollouts/new`, the form in rollout-new.tsx:
 * version, target, stages, gates, each default explained) and one rollout live (`#/rollouts/:id`: each stage, each gate's value
 * against its limit, each edge's progress) with its levers — promote, pause, resume, abort, roll
 * back — behind a confirmation. Live over the rollout streams; every lever is shown only to a
 * session whose permissions allow it (the API refuses the rest anyway).
 */
import { useMemo, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import type { Fleet } from './live.js';
import { useRollout, useRollouts, type RolloutSummary, type RolloutView } from './rollout-live.js';
import { Confirm } from './confirm.js';
import { LineRollback } from './line-rollback.js';
import { CreateRollout, type GateName } from './rollout-new.js';
import { clock, num } from './format.js';

type StageView = RolloutView['stages'][number];
type EdgeProgressView = StageView['edges'][number];
type Action = 'promote' | 'pause' | 'resume' | 'abort' | 'rollback';

const can = (session: SessionInfo, p: 'rollouts:write' | 'rollouts:control') => session.permissions.includes(p);
const ACTIVE = ['running', 'awaiting-promotion', 'paused'];

export function RolloutsPage({ api, session, fleet, id }: { api: Api; session: SessionInfo; fleet: Fleet; id: string | null }) {
  if (id === 'new') return can(session, 'rollouts:write') ? <CreateRollout api={api} fleet={fleet} /> : <p class="empty">Starting a rollout needs the release manager role.</p>;
  if (id !== null) return <RolloutDetail api={api} session={session} id={id} />;
  return <RolloutList api={api} session={session} fleet={fleet} />;
}

// ---------------------------------------------------------------------------------------------
// The list

function RolloutList({ api, session, fleet }: { api: Api; session: SessionInfo; fleet: Fleet }) {
  const live = useRollouts(api);
  const lines = useMemo(() => [...new Set([...(fleet.edges?.values() ?? [])].map((e) => e.line).filter((l): l is string => !!l))].sort(), [fleet.edges]);
  return (
    <section class="rollouts-page">
      <div class="summary">
        <h1>Rollouts</h1>
        {can(session, 'rollouts:write') && (
          <a class="button" href="#/rollouts/new">
            New rollout
          </a>
        )}
      </div>
      {live.value === null ? (
        <p class="loading">Loading rollouts…</p>
      ) : live.value.length === 0 ? (
        <p class="empty">No rollout yet.</p>
      ) : (
        <div class="ro-panel">
          <table class="ro-table">
            <thead>
              <tr>
                <th>Rollout</th>
                <th>Version</th>
                <th>State</th>
                <th>Stage</th>
                <th class="num">Edges</th>
                <th>Started</th>
                <th>By</th>
              </tr>
            </thead>
            <tbody>
              {live.value.map((r) => (
                <tr key={r.id} data-rollout={r.id} data-status={r.status}>
                  <td>
                    <a href={`#/rollouts/${encodeURIComponent(r.id)}`}>{r.id}</a>
                  </td>
                  <td class="mono">
                    {r.model}@{r.version}
                  </td>
                  <td>
                    <StatusBadge status={r.status} />
                  </td>
                  <td>{stageLabel(r)}</td>
                  <td class="num">{r.edges}</td>
                  <td>{clock(r.createdAt)}</td>
                  <td>{who(r.createdBy)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {can(session, 'rollouts:control') && lines.length > 0 && (
        <div class="ro-panel ro-lines">
          <h2>Roll back a line</h2>
          <p class="muted">Every edge of the line returns to the version it ran before its last change; a rollout running there is paused.</p>
          {lines.map((line) => (
            <div key={line} class="ro-line" data-line={line}>
              <LineRollback api={api} session={session} line={line} />
            </div>
          ))}
        </div>
      )}
    </section>
  );
}

const stageLabel = (r: RolloutSummary) => `${r.stageIndex + 1} of ${r.stageCount} · ${r.stageName}`;
const who = (by: string | null) => (by ? by.replace(/^user:/, '') : '–');

function StatusBadge({ status }: { status: string }) {
  return <span class={`ro-status s-${status}`}>{status.replace('-', ' ')}</span>;
}

// ---------------------------------------------------------------------------------------------
// One rollout, live

const GATE_WORDS: Record<GateName, { label: string; max: boolean; unit: 'count' | 'ratio' | 'ms' }> = {
  minFrames: { label: 'Frames seen', max: false, unit: 'count' },
  maxErrorRate: { label: 'Error rate', max: true, unit: 'ratio' },
  maxP95LatencyMs: { label: 'p95 latency', max: true, unit: 'ms' },
  minAgreement: { label: 'Agreement with the current model', max: false, unit: 'ratio' },
  maxDefectRateChange: { label: 'Defect-rate change', max: true, unit: 'ratio' },
  goldenSet: { label: 'Golden set passed (share of edges)', max: false, unit: 'ratio' },
};

function gateValue(gate: GateName, v: number | null): string {
  if (v === null) return '–';
  const unit = GATE_WORDS[gate].unit;
  return unit === 'ratio' ? `${num(v * 100, 2)} %` : unit === 'ms' ? `${num(v, 1)} ms` : num(v, 0);
}

const ACTION_WORDS: Record<Action, { label: string; title: string; text: string; danger: boolean }> = {
  promote: { label: 'Promote', title: 'Promote to the next stage?', text: 'Ends this stage now, whatever its gates say, and opens the next stage (or completes the rollout after the last one).', danger: false },
  pause: { label: 'Pause', title: 'Pause this rollout?', text: 'Stops judging the gates. Every edge keeps what it runs now; nothing moves until someone resumes it.', danger: false },
  resume: { label: 'Resume', title: 'Resume this rollout?', text: 'Measures the current stage again from now: counters, soak and silence clocks start over.', danger: false },
  abort: { label: 'Abort', title: 'Abort this rollout?', text: 'Ends the rollout. Edges already running the new version live keep it; shadow copies are dropped. Use Roll back to return edges to their old version.', danger: true },
  rollback: { label: 'Roll back', title: 'Roll back this rollout?', text: 'Every edge still on this version returns to the version it ran before the rollout. The rollout ends.', danger: true },
};

function allowed(r: RolloutView, session: SessionInfo): Action[] {
  const out: Action[] = [];
  const active = ACTIVE.includes(r.status);
  if (can(session, 'rollouts:write') && active) out.push('promote');
  if (can(session, 'rollouts:control')) {
    if (r.status === 'running' || r.status === 'awaiting-promotion') out.push('pause');
    if (r.status === 'paused') out.push('resume');
    if (active) out.push('abort');
    if (r.status !== 'rolled-back') out.push('rollback');
  }
  return out;
}

function RolloutDetail({ api, session, id }: { api: Api; session: SessionInfo; id: string }) {
  const live = useRollout(api, id);
  const [asking, setAsking] = useState<Action | null>(null);
  const r = live.value;
  if (live.problem) return <p class="empty">{live.problem}. <a href="#/rollouts">All rollouts</a></p>;
  if (!r) return <p class="loading">Loading rollout {id}…</p>;
  const actions = allowed(r, session);
  const lines = r.target.lines ?? [];
  return (
    <section class="rollout-page" data-rollout={r.id} data-status={r.status}>
      <p class="crumbs">
        <a href="#/rollouts">Rollouts</a> › {r.id}
      </p>
      <div class="ro-head">
        <h1>
          <span class="mono">
            {r.model}@{r.version}
          </span>{' '}
          <StatusBadge status={r.status} />
          <span class={`ro-live ${live.connected ? 'on' : ''}`}>{live.connected ? 'live' : 'reconnecting…'}</span>
        </h1>
        <div class="ro-actions">
          {actions.map((a) => (
            <button type="button" key={a} class={ACTION_WORDS[a].danger ? 'danger' : ''} onClick={() => setAsking(a)}>
              {ACTION_WORDS[a].label}
            </button>
          ))}
        </div>
      </div>
      {r.reason && <p class="ro-reason">{r.reason}</p>}
      <dl class="facts ro-facts">
        <dt>Target</dt>
        <dd>{r.target.all ? 'every edge' : r.target.lines ? `line ${r.target.lines.join(', ')}` : `edges ${r.target.edges?.join(', ')}`}</dd>
        <dt>Started</dt>
        <dd>
          {clock(r.createdAt)} by {who(r.createdBy)}
        </dd>
        <dt>On a failed gate</dt>
        <dd>{r.onFailure === 'rollback' ? 'roll back automatically' : 'pause and wait for a person'}</dd>
        <dt>Silence limit</dt>
        <dd>{r.silenceTimeoutSeconds} s · judged once {r.minSample} edge{r.minSample > 1 ? 's' : ''} report</dd>
        {r.finishedAt !== null && (
          <>
            <dt>Finished</dt>
            <dd>{clock(r.finishedAt)}</dd>
          </>
        )}
      </dl>
      <ol class="ro-stepper">
        {r.stages.map((s) => (
          <li key={s.index} class={`st-${s.status} ${s.index === r.stageIndex ? 'current' : ''}`} data-stage={s.name} data-status={s.status}>
            <strong>{s.name}</strong>
            <span>{s.mode}</span>
            <span class="st-status">{s.status.replace('-', ' ')}</span>
          </li>
        ))}
      </ol>
      <EdgesNow r={r} />
      {r.stages.map((s) => (
        <Stage key={s.index} stage={s} current={s.index === r.stageIndex && ACTIVE.includes(r.status)} />
      ))}
      {r.actions.length > 0 && (
        <div class="ro-panel">
          <h2>Who did what</h2>
          <ul class="ro-history">
            {r.actions.map((a, i) => (
              <li key={i}>
                {clock(a.at)} — {a.action} by {who(a.by)}
              </li>
            ))}
          </ul>
        </div>
      )}
      {lines.length > 0 && can(session, 'rollouts:control') && (
        <div class="ro-panel ro-lines">
          <h2>Roll back a line</h2>
          {lines.map((line) => (
            <div key={line} class="ro-line" data-line={line}>
              <LineRollback api={api} session={session} line={line} />
            </div>
          ))}
        </div>
      )}
      {asking && (
        <Confirm
          title={ACTION_WORDS[asking].title}
          confirmLabel={ACTION_WORDS[asking].label}
          danger={ACTION_WORDS[asking].danger}
          onClose={() => setAsking(null)}
          onConfirm={() => api.post(`/api/rollouts/${encodeURIComponent(r.id)}/${asking}`)}
        >
          <p>
            <strong>
              {r.model}@{r.version}
            </strong>
            , stage {r.stageIndex + 1} of {r.stages.length} ({r.stages[r.stageIndex]?.name}).
          </p>
          <p>{ACTION_WORDS[asking].text}</p>
        </Confirm>
      )}
    </section>
  );
}

/** Each edge of the rollout and what it runs now: on the new version, or back on what it ran before. */
function EdgesNow({ r }: { r: RolloutView }) {
  const candidate = `${r.model}@${r.version}`;
  // The latest stage each edge was in has its current report.
  const latest = new Map<string, EdgeProgressView>();
  for (const s of r.stages) for (const e of s.edges) latest.set(e.edgeId, e);
  if (r.members.length === 0) return null;
  const on = r.members.filter((m) => latest.get(m.edgeId)?.reported === candidate).length;
  return (
    <div class="ro-panel ro-now">
      <h2>
        Edges now: {on} of {r.members.length} on {candidate}
      </h2>
      <ul>
        {r.members.map((m) => {
          const e = latest.get(m.edgeId);
          const now = e?.reported ?? null;
          return (
            <li key={m.edgeId} data-edge={m.edgeId} data-on-candidate={String(now === candidate)}>
              <a href={`#/edges/${encodeURIComponent(m.edgeId)}`}>{m.edgeId}</a>: <span class="mono">{now ?? 'nothing reported'}</span>
              {e && !e.online && <span class="muted"> (offline)</span>}
              <span class="muted"> · before the rollout: {m.previous ?? 'unknown'}</span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function selection(s: StageView): string {
  if (s.select.edges) return `edges ${s.select.edges.join(', ')}`;
  if (s.select.line) return `line ${s.select.line}`;
  if (s.select.percent !== undefined) return `${s.select.percent} % of the target`;
  return 'the whole target';
}

function Stage({ stage: s, current }: { stage: StageView; current: boolean }) {
  // goldenSet is a switch (true), not a number: its limit is every edge.
  const gates = Object.entries(s.gates).filter(([, v]) => v !== false) as [GateName, number | boolean][];
  return (
    <article class={`ro-panel ro-stage ${current ? 'current' : ''}`} data-stage={s.name} data-status={s.status}>
      <header>
        <h2>
          Stage {s.index + 1}: {s.name}
        </h2>
        <span class="muted">
          {s.mode === 'shadow' ? 'shadow (runs beside the current model, changes no verdict)' : 'live (decides verdicts)'} · {selection(s)} · soak {s.soakSeconds} s ·{' '}
          {s.promotion === 'manual' ? 'promoted by a person' : 'promoted automatically'}
        </span>
        <StatusBadge status={s.status} />
      </header>
      {s.reason && <p class="ro-reason muted">{s.reason}</p>}
      {gates.length > 0 && (
        <table class="ro-table ro-gates">
          <thead>
            <tr>
              <th>Gate</th>
              <th class="num">Now</th>
              <th class="num">Limit</th>
              <th>Verdict</th>
            </tr>
          </thead>
          <tbody>
            {gates.map(([gate, limit]) => {
              const res = s.gateResults.find((g) => g.gate === gate);
              const status = res?.status ?? 'pending';
              return (
                <tr key={gate} data-gate={gate} data-status={status}>
                  <td>{GATE_WORDS[gate].label}</td>
                  <td class="num">{gateValue(gate, res?.value ?? null)}</td>
                  <td class="num">
                    {typeof limit === 'boolean' ? 'every edge' : `${GATE_WORDS[gate].max ? '≤ ' : '≥ '}${gateValue(gate, limit)}`}
                  </td>
                  <td class={`verdict v-${status}`}>
                    {status}
                    {res?.note ? ` — ${res.note}` : ''}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {gates.length === 0 && <p class="muted ro-nogates">No gates: the stage passes once enough edges report the new version{s.soakSeconds > 0 ? ' and the soak is over' : ''}.</p>}
      {s.edges.length > 0 ? (
        <div class="scroll">
          <table class="ro-table ro-edges">
            <thead>
              <tr>
                <th>Edge</th>
                <th>Line</th>
                <th>{current ? 'Progress' : 'In the stage'}</th>
                <th>Asked to run</th>
                <th>Reports now</th>
                <th class="num">Frames</th>
                <th class="num">Errors</th>
                <th>Converged</th>
              </tr>
            </thead>
            <tbody>
              {s.edges.map((e) => (
                <EdgeRow key={e.edgeId} e={e} />
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted ro-nogates">{s.status === 'pending' ? 'Not started yet.' : 'No edges in this stage.'}</p>
      )}
    </article>
  );
}

function EdgeRow({ e }: { e: EdgeProgressView }) {
  const converged = e.desired !== null && e.desired === e.reported;
  return (
    <tr data-edge={e.edgeId} data-progress={e.status} data-converged={String(converged)}>
      <td>
        <a href={`#/edges/${encodeURIComponent(e.edgeId)}`}>{e.edgeId}</a> {!e.online && <span class="muted">(offline)</span>}
      </td>
      <td>{e.line ?? '–'}</td>
      <td class={`progress p-${e.status}`} title={e.failed ?? ''}>
        {e.status}
      </td>
      <td class="mono">{e.desired ?? '–'}</td>
      <td class="mono">{e.reported ?? '–'}</td>
      <td class="num">{num(e.frames, 0)}</td>
      <td class="num">{e.errorRate === null ? '–' : `${num(e.errorRate * 100, 2)} %`}</td>
      <td>{e.convergedAt !== null ? clock(e.convergedAt) : converged ? 'yes' : 'not yet'}</td>
    </tr>
  );
}

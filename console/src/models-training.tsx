/**
 * Training from the console: start a job from an uploaded archive or images already in the fleet,
 * watch it live over its event stream, read its log, cancel it, open the version it made.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api } from './api.js';
import { clock, num } from './format.js';
import { enc, Problem, type Job, type Json } from './models-shared.js';

export function Training({ api, onDone }: { api: Api; onDone: () => void }) {
  const [backbones, setBackbones] = useState<{ name: string; default: boolean }[]>([]);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [watching, setWatching] = useState<string | null>(null);
  const [form, setForm] = useState({ kind: 'anomaly', model: '', version: '', backbone: '', source: 'archive', line: '', edges: '', from: '', to: '' });
  const [archive, setArchive] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.get<{ backbones: { name: string; default: boolean }[] }>('/api/backbones').then((r) => setBackbones(r.backbones), (err: Error) => setError(err.message));
    api.get<{ jobs: Job[] }>('/api/training-jobs?limit=10').then((r) => setJobs(r.jobs), (err: Error) => setError(err.message));
  }, [api]);
  const set = (key: keyof typeof form) => (e: Event) => setForm({ ...form, [key]: (e.target as HTMLInputElement).value });
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const options: Json = { kind: form.kind, model: form.model, ...(form.version && { version: form.version }), ...(form.backbone && { backbone: form.backbone }) };
      let job: Job;
      if (form.source === 'archive') {
        const q = new URLSearchParams(options as Record<string, string>).toString();
        job = await api.upload<Job>(`/api/training-jobs?${q}`, new Blob([archive!], { type: 'application/x-tar' }));
      } else {
        const edges = form.edges.split(',').map((s) => s.trim()).filter(Boolean);
        const source: Json = { type: 'fleet', ...(form.line && { line: form.line }), ...(edges.length && { edges }), ...(form.from && { from: new Date(form.from).getTime() }), ...(form.to && { to: new Date(form.to).getTime() }) };
        job = await api.post<Job>('/api/training-jobs', { ...options, source });
      }
      setJobs((js) => [job, ...js.filter((j) => j.id !== job.id)]);
      setWatching(job.id);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const update = (job: Job) => setJobs((js) => js.map((j) => (j.id === job.id ? job : j)));
  return (
    <section class="panel training">
      <h2>Training</h2>
      <form onSubmit={submit}>
        <div class="grid">
          <label>
            Kind
            <select name="kind" value={form.kind} onChange={set('kind')}>
              <option value="anomaly">anomaly (good images only)</option>
              <option value="classify">classify (a folder per label)</option>
            </select>
          </label>
          <label>
            Model name <input name="train-model" required value={form.model} onInput={set('model')} />
          </label>
          <label>
            Version <input name="train-version" placeholder="next patch" value={form.version} onInput={set('version')} />
          </label>
          <label>
            Backbone
            <select name="backbone" value={form.backbone} onChange={set('backbone')}>
              <option value="">(the fleet's default)</option>
              {backbones.map((b) => (
                <option key={b.name} value={b.name}>
                  {b.name}
                  {b.default ? ' (default)' : ''}
                </option>
              ))}
            </select>
          </label>
          <label>
            Images
            <select name="source" value={form.source} onChange={set('source')}>
              <option value="archive">an uploaded archive (.tar)</option>
              <option value="fleet">images already in the fleet</option>
            </select>
          </label>
          {form.source === 'archive' ? (
            <label class="wide">
              Archive (.tar: good/ and defects/, or a folder per label) <input type="file" name="archive" accept=".tar" onChange={(e) => setArchive((e.target as HTMLInputElement).files?.[0] ?? null)} />
            </label>
          ) : (
            <>
              <label>
                Line <input name="line" value={form.line} onInput={set('line')} />
              </label>
              <label>
                Edges (comma-separated) <input name="edges" value={form.edges} onInput={set('edges')} />
              </label>
              <label>
                From <input type="datetime-local" name="from" value={form.from} onInput={set('from')} />
              </label>
              <label>
                To <input type="datetime-local" name="to" value={form.to} onInput={set('to')} />
              </label>
            </>
          )}
        </div>
        <button type="submit" disabled={busy || !form.model || (form.source === 'archive' && !archive)}>
          {busy ? 'Starting…' : 'Start training'}
        </button>
      </form>
      <Problem text={error} />
      {watching && <JobWatch api={api} id={watching} onUpdate={update} onDone={onDone} />}
      {jobs.length > 0 && (
        <table class="jobs">
          <thead>
            <tr>
              <th>Job</th>
              <th>Model</th>
              <th>Kind</th>
              <th>State</th>
              <th>By</th>
              <th>Started</th>
            </tr>
          </thead>
          <tbody>
            {jobs.map((j) => (
              <tr key={j.id} data-job={j.id}>
                <td>
                  <a href="#/models" onClick={(e) => (e.preventDefault(), setWatching(j.id))}>
                    {j.id}
                  </a>
                </td>
                <td>{j.resultVersion ? <a href={`#/models/${enc(j.model)}/${enc(j.resultVersion)}`}>{`${j.model}@${j.resultVersion}`}</a> : j.model}</td>
                <td>{j.kind}</td>
                <td class={`job-state ${j.state}`}>{j.state}</td>
                <td>{j.createdBy}</td>
                <td class="seen">{clock(j.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** One job, live: its events stream until it finishes; its log on demand; cancel while it runs. */
function JobWatch({ api, id, onUpdate, onDone }: { api: Api; id: string; onUpdate: (j: Job) => void; onDone: () => void }) {
  const [job, setJob] = useState<Job | null>(null);
  const [log, setLog] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const finished = (j: Job | null) => !!j && ['succeeded', 'failed', 'cancelled'].includes(j.state);
  useEffect(() => {
    setJob(null);
    setLog(null);
    const source = new EventSource(`/api/training-jobs/${enc(id)}/events`);
    let last: Job | null = null;
    source.addEventListener('job', (ev) => {
      last = JSON.parse((ev as MessageEvent<string>).data) as Job;
      setError(null);
      setJob(last);
      onUpdate(last);
      if (finished(last)) {
        source.close();
        if (last.state === 'succeeded') onDone();
      }
    });
    // The stream ends when the job does; an error before that is the connection's.
    source.addEventListener('error', () => {
      if (!finished(last)) setError('The job\'s live feed dropped; the browser reconnects by itself.');
      if (source.readyState === EventSource.CLOSED || finished(last)) source.close();
    });
    return () => source.close();
  }, [api, id]);
  const showLog = () => api.get<{ lines: string[] }>(`/api/training-jobs/${enc(id)}/logs?limit=200`).then((r) => setLog(r.lines), (err: Error) => setError(err.message));
  const cancel = () => api.post<Job>(`/api/training-jobs/${enc(id)}/cancel`).then(setJob, (err: Error) => setError(err.message));
  if (!job) return <p class="muted">Connecting to job {id}…</p>;
  return (
    <div class="job" data-job={job.id} data-state={job.state}>
      <p>
        <strong>{job.id}</strong>: {job.kind} model <strong>{job.model}</strong> on {job.backbone} ·{' '}
        {Object.entries(job.counts)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ')}
      </p>
      <div class="progress" title={job.phase}>
        <span style={{ width: `${Math.round(job.progress * 100)}%` }} />
      </div>
      <p>
        <span class={`job-state ${job.state}`} data-testid="job-state">
          {job.state}
        </span>{' '}
        · {job.phase} · {num(job.progress * 100, 0)} %{job.error && <span class="error"> · {job.error}</span>}
      </p>
      <div class="row">
        {!finished(job) && (
          <button type="button" onClick={cancel}>
            Cancel job
          </button>
        )}
        <button type="button" class="secondary" onClick={showLog}>
          Show log
        </button>
        {job.state === 'succeeded' && job.resultVersion && (
          <a class="open-card" href={`#/models/${enc(job.model)}/${enc(job.resultVersion)}`}>
            Open {job.model}@{job.resultVersion}'s model card
          </a>
        )}
      </div>
      <Problem text={error} />
      {log && <pre class="log">{log.join('\n') || '(no lines)'}</pre>}
    </div>
  );
}

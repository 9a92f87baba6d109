/**
 * Models (release managers): the registry with each version's provenance and signature, a
 * version's model card (data, backbone, method, search trials, validation figures, confusion
 * matrix, the false-reject / catch-rate curve with its operating point, the golden set), package
 * upload, the pack wizard for a bare ONNX file, and training jobs watched live over SSE. Controls
 * appear only with `registry:write` / `training:write`; the API refuses them anyway.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import type { Api, SessionInfo } from './api.js';
import { bytes, clock, num } from './format.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- model cards are free-form JSON, read defensively
type Json = Record<string, any>;
interface ModelSummary { name: string; versions: number; latestVersion: string; updatedAt: number }
interface VersionView { name: string; version: string; sha256: string; size: number; keyId: string; task: string; createdAt: number; uploadedBy: string | null; trainedBy: string | null; manifest: Json }
interface Job { id: string; kind: string; model: string; version: string | null; backbone: string; state: string; phase: string; progress: number; counts: Record<string, number>; error: string | null; createdBy: string; createdAt: number; resultVersion: string | null }

const can = (s: SessionInfo, p: string) => (s.permissions as readonly string[]).includes(p);
const pct = (v: unknown) => (typeof v === 'number' ? `${num(v * 100)} %` : '–');
const enc = encodeURIComponent;

/** Who vouches for a version: its publisher's key, or the fleet's own for what the fleet made. */
export function signatureText(v: Pick<VersionView, 'keyId' | 'trainedBy'>): string {
  if (v.keyId !== 'fleet') return `publisher ${v.keyId}`;
  if (v.trainedBy?.startsWith('training-job:')) return 'fleet key (trained here)';
  if (v.trainedBy?.startsWith('fleet-pack:')) return 'fleet key (packed here)';
  return 'fleet key (unsigned upload)';
}

export function ModelsPage({ api, session, version }: { api: Api; session: SessionInfo; version?: { name: string; version: string } }) {
  if (version) return <VersionPage api={api} name={version.name} version={version.version} />;
  return <Registry api={api} session={session} />;
}

function Registry({ api, session }: { api: Api; session: SessionInfo }) {
  const [versions, setVersions] = useState<VersionView[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const refresh = () => setTick((n) => n + 1);
  useEffect(() => {
    let gone = false;
    (async () => {
      const { models } = await api.get<{ models: ModelSummary[] }>('/api/models');
      const all = await Promise.all(models.map((m) => api.get<{ versions: VersionView[] }>(`/api/models/${enc(m.name)}/versions`)));
      return all.flatMap((r) => r.versions).sort((a, b) => b.createdAt - a.createdAt);
    })().then(
      (v) => !gone && (setVersions(v), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, tick]);
  return (
    <section class="models-page">
      <h1>Models</h1>
      {error && <p class="error">{error}</p>}
      <section class="panel">
        <h2>Registry</h2>
        {!versions && !error && <p class="muted">Loading…</p>}
        {versions && versions.length === 0 && <p class="muted">No model versions yet.</p>}
        {versions && versions.length > 0 && (
          <div class="scroll">
            <table class="registry">
              <thead>
                <tr>
                  <th>Model</th>
                  <th>Version</th>
                  <th>Task</th>
                  <th>Size</th>
                  <th>Uploaded by</th>
                  <th>Trained / packed by</th>
                  <th>When</th>
                  <th>Signature</th>
                </tr>
              </thead>
              <tbody>
                {versions.map((v) => (
                  <tr key={`${v.name}@${v.version}`} data-version={`${v.name}@${v.version}`}>
                    <td>{v.name}</td>
                    <td>
                      <a href={`#/models/${enc(v.name)}/${enc(v.version)}`}>{v.version}</a>
                    </td>
                    <td>{v.task}</td>
                    <td>{bytes(v.size)}</td>
                    <td>{v.uploadedBy ?? '–'}</td>
                    <td>{v.trainedBy ?? '–'}</td>
                    <td class="seen">{clock(v.createdAt)}</td>
                    <td class={v.keyId === 'fleet' ? 'sig fleet' : 'sig publisher'}>{signatureText(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {can(session, 'registry:write') && <UploadPackage api={api} onAdded={refresh} />}
      {can(session, 'registry:write') && <PackWizard api={api} onAdded={refresh} />}
      {can(session, 'training:write') && <Training api={api} onDone={refresh} />}
    </section>
  );
}

/** A refusal or a failure as one line. */
function Problem({ text }: { text: string | null }) {
  return text ? (
    <p class="error" role="alert">
      {text}
    </p>
  ) : null;
}

function UploadPackage({ api, onAdded }: { api: Api; onAdded: () => void }) {
  const [name, setName] = useState('');
  const [files, setFiles] = useState<File[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<VersionView | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      let body: Blob | FormData;
      if (files.length === 1 && /\.tar$/i.test(files[0]!.name)) body = new Blob([files[0]!], { type: 'application/x-tar' });
      else {
        body = new FormData();
        for (const f of files) body.append(f.name, f, f.name);
      }
      const v = await api.upload<VersionView>(`/api/models/${enc(name)}/versions`, body);
      setDone(v);
      onAdded();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel upload" onSubmit={submit}>
      <h2>Upload a package</h2>
      <p class="muted">A package archive (.tar) or its files (manifest.json, model.onnx, …) with the publisher's signature.json; the fleet refuses unsigned packages unless configured otherwise.</p>
      <div class="row">
        <label>
          Model name <input name="model" required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Package <input type="file" name="package" multiple required onChange={(e) => setFiles([...((e.target as HTMLInputElement).files ?? [])])} />
        </label>
        <button type="submit" disabled={busy || files.length === 0 || !name}>
          {busy ? 'Uploading…' : 'Upload'}
        </button>
      </div>
      <Problem text={error} />
      {done && (
        <p class="ok">
          Registered <a href={`#/models/${enc(done.name)}/${enc(done.version)}`}>{`${done.name}@${done.version}`}</a> ({signatureText(done)}).
        </p>
      )}
    </form>
  );
}

interface Proposal { draft: string; file: string; sha256: string; size: number; convention: string; inputs: Json[]; outputs: Json[]; proposedManifest: Json | null; proposalError?: string }

/** The editable declarations of the wizard, as form strings. */
interface Form { name: string; version: string; task: string; labels: string; defectLabels: string; width: string; height: string; color: string; resize: string; scale: string; mean: string; std: string; threshold: string; normMin: string; normMax: string; normThreshold: string }

function formFrom(p: Proposal): Form {
  const m = p.proposedManifest;
  const norm = m?.outputs?.anomaly?.normalization;
  // Without a proposal, what the graph's first input says for sure: NCHW [1, C, H, W] of fixed size.
  const shape = p.inputs[0]?.shape as unknown[] | undefined;
  const fixed = !m && shape?.length === 4 && shape.every((d) => typeof d === 'number') && (shape[1] === 1 || shape[1] === 3) ? (shape as number[]) : null;
  return {
    name: m?.name ?? p.file.replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]/g, '-'),
    version: m?.version ?? '1.0.0',
    task: m?.task ?? '',
    labels: (m?.labels ?? []).join(', '),
    defectLabels: (m?.defectLabels ?? []).join(', '),
    width: String(m?.input?.width ?? fixed?.[3] ?? ''),
    height: String(m?.input?.height ?? fixed?.[2] ?? ''),
    color: m?.input?.color ?? (fixed?.[1] === 1 ? 'gray' : ''),
    resize: m?.input?.resize ?? '',
    scale: m?.input?.scale !== undefined ? String(m.input.scale) : '',
    mean: (m?.input?.mean ?? []).join(', '),
    std: (m?.input?.std ?? []).join(', '),
    threshold: m?.thresholds?.default !== undefined ? String(m.thresholds.default) : '',
    normMin: norm ? String(norm.min) : '',
    normMax: norm ? String(norm.max) : '',
    normThreshold: norm ? String(norm.threshold) : '',
  };
}

/** The form as the API's declarations: only what is filled in. */
function declarationsOf(f: Form): Json {
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const nums = (s: string) => list(s).map(Number);
  const d: Json = {};
  if (f.name) d.name = f.name;
  if (f.version) d.version = f.version;
  if (f.task) d.task = f.task;
  if (list(f.labels).length) d.labels = list(f.labels);
  if (list(f.defectLabels).length) d.defectLabels = list(f.defectLabels);
  if (f.width && f.height) d.size = { width: Number(f.width), height: Number(f.height) };
  if (f.color) d.color = f.color;
  if (f.resize) d.resize = f.resize;
  if (f.scale) d.scale = Number(f.scale);
  if (list(f.mean).length) d.mean = nums(f.mean);
  if (list(f.std).length) d.std = nums(f.std);
  if (f.threshold) d.threshold = Number(f.threshold);
  if (f.normMin && f.normMax && f.normThreshold) d.normalization = { min: Number(f.normMin), max: Number(f.normMax), threshold: Number(f.normThreshold) };
  return d;
}

function readBase64(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
    r.onerror = () => reject(new Error(`cannot read ${file.name}`));
    r.readAsDataURL(file);
  });
}

function PackWizard({ api, onAdded }: { api: Api; onAdded: () => void }) {
  const [proposal, setProposal] = useState<Proposal | null>(null);
  const [form, setForm] = useState<Form | null>(null);
  const [sample, setSample] = useState<File | null>(null);
  const [signature, setSignature] = useState<File | null>(null);
  const [smoke, setSmoke] = useState<Json | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<VersionView | null>(null);
  const run = async (what: string, fn: () => Promise<void>) => {
    setBusy(what);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(null);
    }
  };
  const propose = (file: File) =>
    run('Reading the model…', async () => {
      setProposal(null);
      setSmoke(null);
      setDone(null);
      const p = await api.upload<Proposal>(`/api/models/propose?file=${enc(file.name)}`, new Blob([file], { type: 'application/octet-stream' }));
      setProposal(p);
      setForm(formFrom(p));
    });
  const field = (key: keyof Form, label: string, opts: { options?: string[]; wide?: boolean } = {}) => (
    <label class={opts.wide ? 'wide' : ''}>
      {label}
      {opts.options ? (
        <select name={key} value={form![key]} onChange={(e) => (setForm({ ...form!, [key]: (e.target as HTMLSelectElement).value }), setSmoke(null))}>
          <option value="">(as the model says)</option>
          {opts.options.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      ) : (
        <input name={key} value={form![key]} onInput={(e) => (setForm({ ...form!, [key]: (e.target as HTMLInputElement).value }), setSmoke(null))} />
      )}
    </label>
  );
  return (
    <section class="panel wizard">
      <h2>Pack an ONNX file</h2>
      <ol class="steps">
        <li class={proposal || done ? 'done' : 'now'}>1. Upload the ONNX file</li>
        <li class={smoke || done ? 'done' : proposal ? 'now' : ''}>2. Check the proposal, test it on a sample image</li>
        <li class={done ? 'done' : smoke ? 'now' : ''}>3. Register</li>
      </ol>
      <label class="onnx">
        ONNX file <input type="file" name="onnx" accept=".onnx" onChange={(e) => {
          const f = (e.target as HTMLInputElement).files?.[0];
          if (f) void propose(f);
        }} />
      </label>
      {proposal && form && (
        <div class="proposal" data-draft={proposal.draft}>
          <p class="muted">
            {proposal.file}: {bytes(proposal.size)}, convention <strong>{proposal.convention}</strong>, sha256 {proposal.sha256.slice(0, 12)}…
          </p>
          <table class="tensors">
            <thead>
              <tr>
                <th>Graph</th>
                <th>Name</th>
                <th>Type</th>
                <th>Shape</th>
              </tr>
            </thead>
            <tbody>
              {[...proposal.inputs.map((t) => ['input', t] as const), ...proposal.outputs.map((t) => ['output', t] as const)].map(([kind, t]) => (
                <tr key={`${kind}-${t.name}`}>
                  <td>{kind}</td>
                  <td>{t.name}</td>
                  <td>{t.dtype}</td>
                  <td>[{(t.shape as unknown[]).map((d) => (d === null ? '?' : String(d))).join(', ')}]</td>
                </tr>
              ))}
            </tbody>
          </table>
          {proposal.proposalError && <p class="warn">The fleet cannot propose everything: {proposal.proposalError}. Fill in what is missing below.</p>}
          <div class="grid">
            {field('name', 'Name')}
            {field('version', 'Version')}
            {field('task', 'Task', { options: ['classification', 'anomaly', 'detection'] })}
            {field('labels', 'Labels (comma-separated)', { wide: true })}
            {field('defectLabels', 'Defect labels')}
            {field('width', 'Input width')}
            {field('height', 'Input height')}
            {field('color', 'Colour', { options: ['rgb', 'bgr', 'gray'] })}
            {field('resize', 'Resize', { options: ['stretch', 'letterbox', 'center-crop'] })}
            {field('scale', 'Scale')}
            {field('mean', 'Mean')}
            {field('std', 'Std')}
            {field('threshold', 'Default threshold')}
            {field('normMin', 'Anomaly score min')}
            {field('normMax', 'Anomaly score max')}
            {field('normThreshold', 'Anomaly raw threshold')}
          </div>
          <div class="row">
            <label>
              Sample image <input type="file" name="sample" accept="image/*" onChange={(e) => (setSample((e.target as HTMLInputElement).files?.[0] ?? null), setSmoke(null))} />
            </label>
            <button
              type="button"
              disabled={!sample || busy !== null}
              onClick={() =>
                run('Testing…', async () => {
                  setSmoke(await api.post<Json>(`/api/models/propose/${proposal.draft}/smoke-test`, { declarations: declarationsOf(form), image: await readBase64(sample!) }));
                })
              }
            >
              Smoke test
            </button>
          </div>
          {smoke && (
            <dl class="facts smoke" data-testid="smoke-result">
              <dt>Verdict</dt>
              <dd class={`verdict ${smoke.inspection.verdict}`}>{smoke.inspection.verdict}</dd>
              <dt>Label</dt>
              <dd>{smoke.inspection.label}</dd>
              <dt>Score</dt>
              <dd>
                {num(smoke.inspection.score, 3)} (threshold {num(smoke.inspection.threshold, 3)})
              </dd>
              <dt>Time</dt>
              <dd>{num(smoke.inspection.timings?.totalMs)} ms</dd>
              <dt>Input</dt>
              <dd>
                {smoke.manifest.input.width}×{smoke.manifest.input.height} {smoke.manifest.input.color}, {smoke.manifest.input.resize}
              </dd>
            </dl>
          )}
          <div class="row">
            <label>
              Publisher signature.json (optional) <input type="file" name="signature" accept=".json" onChange={(e) => setSignature((e.target as HTMLInputElement).files?.[0] ?? null)} />
            </label>
            <button
              type="button"
              disabled={!smoke || busy !== null}
              onClick={() =>
                run('Registering…', async () => {
                  const body: Json = { declarations: declarationsOf(form) };
                  if (signature) body.signature = JSON.parse(await signature.text());
                  const v = await api.post<VersionView>(`/api/models/propose/${proposal.draft}/register`, body);
                  setDone(v);
                  setProposal(null);
                  setSmoke(null);
                  onAdded();
                })
              }
            >
              Register
            </button>
          </div>
        </div>
      )}
      {busy && <p class="muted">{busy}</p>}
      <Problem text={error} />
      {done && (
        <p class="ok">
          Registered <a href={`#/models/${enc(done.name)}/${enc(done.version)}`}>{`${done.name}@${done.version}`}</a> ({signatureText(done)}).
        </p>
      )}
    </section>
  );
}

function Training({ api, onDone }: { api: Api; onDone: () => void }) {
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

function VersionPage({ api, name, version }: { api: Api; name: string; version: string }) {
  const [v, setV] = useState<VersionView | null>(null);
  const [card, setCard] = useState<Json | null | undefined>(undefined);
  const [golden, setGolden] = useState<Json | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const base = `/api/models/${enc(name)}/versions/${enc(version)}`;
    // The card and the golden set are asked for only where the package says it has them
    // (a trainer's manifest names its card; the card or manifest names a golden set).
    api.get<VersionView>(base).then(
      async (view) => {
        setV(view);
        const meta = (view.manifest.metadata ?? {}) as Json;
        const c = meta.modelCard ? await api.get<Json>(`${base}/card`).catch(() => null) : null;
        setCard(c);
        setGolden(c?.golden || meta.golden ? await api.get<Json>(`${base}/golden`).catch(() => null) : null);
      },
      (err: Error) => setError(err.message),
    );
  }, [api, name, version]);
  return (
    <section class="models-page version-page" data-version={`${name}@${version}`}>
      <p class="crumbs">
        <a href="#/models">Models</a> › {name} › {version}
      </p>
      <h1>
        {name}@{version}
      </h1>
      <Problem text={error} />
      {v && (
        <dl class="facts">
          <dt>Task</dt>
          <dd>{v.task}</dd>
          <dt>Size</dt>
          <dd>{bytes(v.size)}</dd>
          <dt>Registered</dt>
          <dd>{clock(v.createdAt)}</dd>
          <dt>Uploaded by</dt>
          <dd>{v.uploadedBy ?? '–'}</dd>
          <dt>Trained / packed by</dt>
          <dd>{v.trainedBy ?? '–'}</dd>
          <dt>Signature</dt>
          <dd>{signatureText(v)}</dd>
          <dt>sha256</dt>
          <dd class="mono">{v.sha256}</dd>
          <dt>Input</dt>
          <dd>
            {v.manifest.input.width}×{v.manifest.input.height} {v.manifest.input.color}, {v.manifest.input.resize}
          </dd>
          <dt>Labels</dt>
          <dd>{(v.manifest.labels as string[]).join(', ') || '–'}</dd>
        </dl>
      )}
      {card === null && <p class="muted">No model card: this version was not made by osprey train.</p>}
      {card && <ModelCard card={card} />}
      {golden && <Golden golden={golden} />}
    </section>
  );
}

function ModelCard({ card }: { card: Json }) {
  const val = card.validation as Json | undefined;
  const trials = (card.search?.trials ?? card.trials) as Json[] | undefined;
  return (
    <section class="card" data-testid="model-card">
      <h2>Model card</h2>
      <div class="panels">
        <dl class="facts">
          <dt>Data</dt>
          <dd>
            {Object.entries((card.data ?? {}) as Json)
              .filter(([k, n]) => typeof n === 'number' || (k === 'perLabel' && n))
              .map(([k, n]) => (k === 'perLabel' ? Object.entries(n as Json).map(([l, c]) => `${l}: ${c}`).join(', ') : `${n} ${k.replace(/([A-Z])/g, ' $1').toLowerCase()}`))
              .join(' · ') || '–'}
          </dd>
          <dt>Backbone</dt>
          <dd>
            {backboneName(card.backbone as Json | undefined)} <span class="muted mono">sha256 {String(card.backbone?.sha256 ?? '–').slice(0, 12)}…</span>
            {Array.isArray(card.backbone?.taps) && <span class="muted"> · {card.backbone.taps.length} feature {card.backbone.taps.length === 1 ? 'tap' : 'taps'}</span>}
          </dd>
          <dt>Method</dt>
          <dd>{card.method?.name ?? '–'}</dd>
          <dt>Hyper-parameters</dt>
          <dd class="mono small">
            {Object.entries((card.method?.hyperParameters ?? {}) as Json)
              .map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : String(x)}`)
              .join(' ')}
          </dd>
          {card.operatingPoint && (
            <>
              <dt>Operating point</dt>
              <dd>
                {card.operatingPoint.name} (p{card.operatingPoint.percentile} of calibration scores, raw threshold {num(card.operatingPoint.rawThreshold, 4)})
              </dd>
            </>
          )}
          <dt>Made</dt>
          <dd>
            {typeof card.createdAt === 'string' ? clock(Date.parse(card.createdAt)) : '–'} by {card.createdBy ?? '–'} with {card.tool?.name} {card.tool?.version}, {num(card.timing?.trainSeconds)} s
          </dd>
        </dl>
        <dl class="facts validation" data-testid="validation">
          <dt>Validation</dt>
          <dd>{val ? (val.goodSource ?? val.split ?? '–') : 'none (no defect or held-out images)'}</dd>
          {val?.auroc !== undefined && (
            <>
              <dt>AUROC</dt>
              <dd class="figure">{pct(val.auroc)}</dd>
              <dt>Images</dt>
              <dd>
                {val.goodImages} good, {val.defectImages} defect
              </dd>
              <dt>At the operating point</dt>
              <dd>
                false rejects {pct(val.atOperatingPoint?.falseRejectRate)}, caught {pct(val.atOperatingPoint?.catchRate)}
              </dd>
            </>
          )}
          {val?.accuracy !== undefined && (
            <>
              <dt>Accuracy</dt>
              <dd class="figure">{pct(val.accuracy)}</dd>
              <dt>Images</dt>
              <dd>{val.images} held out</dd>
            </>
          )}
        </dl>
      </div>
      {Array.isArray(val?.curve) && <RateCurve curve={val!.curve as Json[]} operating={card.operatingPoint?.percentile as number | undefined} />}
      {val?.confusion && <Confusion confusion={val.confusion as Json} />}
      {trials && trials.length > 0 && <Trials trials={trials} />}
    </section>
  );
}

/** The backbone's file name, unless the fleet stores it by its hash (then the hash says it). */
function backboneName(b: Json | undefined): string {
  const file = String(b?.file ?? '').split('/').pop() ?? '';
  if (!file) return '–';
  return b?.sha256 && String(b.sha256).startsWith(file.replace(/\.onnx$/, '').slice(0, 12)) ? '' : file;
}

/** False-reject and catch rates against the threshold (a percentile of the calibration scores), the operating point marked. */
function RateCurve({ curve, operating }: { curve: Json[]; operating: number | undefined }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current!;
    const xs = curve.map((p) => p.percentile as number);
    const data: uPlot.AlignedData = [xs, curve.map((p) => (p.falseRejectRate as number) * 100), curve.map((p) => (p.catchRate as number) * 100)];
    const mark: uPlot.Plugin = {
      hooks: {
        draw: (u) => {
          if (operating === undefined) return;
          const x = u.valToPos(operating, 'x', true);
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = '#111827';
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = '#111827';
          ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.fillText(`operating point p${operating}`, x + 6 * devicePixelRatio, u.bbox.top + 14 * devicePixelRatio);
          ctx.restore();
        },
      },
    };
    const plot = new uPlot(
      {
        width: el.clientWidth || 800,
        height: 260,
        plugins: [mark],
        series: [
          { label: 'threshold (percentile)', value: (_u, v) => (v === null ? '–' : `p${v}`) },
          { label: 'false rejects %', stroke: '#b91c1c', width: 2, points: { show: true, size: 6 }, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} %`) },
          { label: 'caught %', stroke: '#15803d', width: 2, points: { show: true, size: 6 }, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} %`) },
        ],
        axes: [
          { label: 'threshold: percentile of the good images\' calibration scores', values: (_u, ticks) => ticks.map((t) => `p${t}`) },
          { label: '% of images', values: (_u, ticks) => ticks.map((t) => `${t} %`) },
        ],
        scales: { x: { time: false, range: [50, 100] }, y: { range: [0, 100] } },
      },
      data,
      el,
    );
    const resize = () => plot.setSize({ width: el.clientWidth, height: 260 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [curve, operating]);
  return (
    <figure class="chart curve" data-testid="rate-curve">
      <figcaption>False rejects and catch rate by threshold (validation images)</figcaption>
      <div ref={box} />
    </figure>
  );
}

function Confusion({ confusion }: { confusion: Json }) {
  const labels = confusion.labels as string[];
  const matrix = confusion.matrix as number[][];
  const max = Math.max(1, ...matrix.flat());
  return (
    <figure class="confusion" data-testid="confusion">
      <figcaption>Confusion matrix (rows: true label, columns: predicted)</figcaption>
      <table>
        <thead>
          <tr>
            <th />
            {labels.map((l) => (
              <th key={l}>{l}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, i) => (
            <tr key={labels[i]}>
              <th>{labels[i]}</th>
              {row.map((n, j) => (
                <td key={j} class={i === j ? 'diag' : n > 0 ? 'miss' : ''} style={{ '--a': String(n / max) }}>
                  {n}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

function Trials({ trials }: { trials: Json[] }) {
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t)))].slice(0, 8);
  return (
    <figure class="trials">
      <figcaption>Search trials</figcaption>
      <table>
        <thead>
          <tr>
            {keys.map((k) => (
              <th key={k}>{k}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {trials.map((t, i) => (
            <tr key={i}>
              {keys.map((k) => (
                <td key={k}>{typeof t[k] === 'number' ? num(t[k] as number, 4) : typeof t[k] === 'object' ? JSON.stringify(t[k]) : String(t[k] ?? '–')}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

function Golden({ golden }: { golden: Json }) {
  const items = (golden.images ?? golden.items ?? golden.set ?? []) as Json[];
  return (
    <section class="panel golden" data-testid="golden">
      <h2>Golden set</h2>
      <p class="muted">
        {Array.isArray(items) ? `${items.length} images with their expected answers` : 'present'}
        {typeof golden.expectedAccuracy === 'number' ? ` (expected accuracy ${pct(golden.expectedAccuracy)})` : ''}; edges check the model against it before they switch to it.
      </p>
      {Array.isArray(items) && items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Image</th>
              <th>Truth</th>
              <th>Expected answer</th>
            </tr>
          </thead>
          <tbody>
            {items.slice(0, 20).map((g, i) => (
              <tr key={i}>
                <td class="mono">{String(g.file ?? i)}</td>
                <td>{String(g.truth ?? '–')}</td>
                <td>
                  {String(g.expected?.verdict ?? '')} {String(g.expected?.label ?? '')} {typeof g.expected?.score === 'number' ? num(g.expected.score, 3) : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

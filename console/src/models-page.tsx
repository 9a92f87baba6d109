/**
 * Models (release managers): the registry with each version's provenance and signature, package
 * upload, the pack wizard (models-pack.tsx), training jobs (models-training.tsx) and each
 * version's model card (models-card.tsx). Controls appear only with `registry:write` /
 * `training:write`; the API refuses them anyway.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import { bytes, clock } from './format.js';
import { can, enc, Problem, signatureText, type ModelSummary, type VersionView } from './models-shared.js';
import { PackWizard } from './models-pack.js';
import { Training } from './models-training.js';
import { VersionPage } from './models-card.js';

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

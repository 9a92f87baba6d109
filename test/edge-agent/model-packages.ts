/**
 * Real model packages for the desired-state tests, built once per test file: two versions of the
 * built-in anomaly model fitted with different margins (so their scores and verdicts differ), one
 * that loads but fails on every real frame, one that does not load, and fleet-style signing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import type { ModelArtifact } from '../../protocol/messages.js';
import { archiveDirectory } from '../../models/package-archive.js';
import { generateSigningKeys, signArtifact } from '../../models/artifact-signature.js';
import { fitBuiltinAnomalyModel, OnnxModelBuilder, writeModelPackage } from '../../models/authoring.js';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import type { ManifestDraft } from '../../models/authoring.js';
import { sha256Of, type ArtifactServer } from './artifact-server.js';

export interface TestPackage {
  name: string;
  version: string;
  /** `name@version`, as results record it. */
  id: string;
  dir: string;
  archive: Buffer;
  sha256: string;
}

export interface TestPackages {
  keys: { privateKeyPem: string; publicKeyPem: string };
  /** The config's own model (the demo model). */
  localDir: string;
  /** line-anomaly@2.0.0: the built-in model, usual margin. */
  v2: TestPackage;
  /** line-anomaly@3.0.0: same statistics, margin 0.35: flags many good parts. */
  v3: TestPackage;
  /** line-anomaly@9.0.0-nan: loads (warm-up passes) but fails every real frame with OSP_ERR_INFERENCE. */
  nan: TestPackage;
  /** line-anomaly@9.0.1-broken: model.onnx is not ONNX: OSP_ERR_MODEL_LOAD. */
  broken: TestPackage;
}

const NAME = 'line-anomaly';

async function pack(dir: string, name: string, version: string): Promise<TestPackage> {
  const archive = await archiveDirectory(dir);
  return { name, version, id: `${name}@${version}`, dir, archive, sha256: sha256Of(archive) };
}

function anomalyDraft(version: string, size: number): ManifestDraft {
  return {
    schemaVersion: 1,
    name: NAME,
    version,
    task: 'anomaly',
    input: { name: 'image', layout: 'nchw', width: size, height: size, dtype: 'float32', color: 'gray', resize: 'stretch', scale: 1 / 255, mean: [0], std: [1] },
    outputs: { anomaly: { format: 'osprey', score: 'score', map: 'anomaly_map' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  } as ManifestDraft;
}

/**
 * score = max(map) + sqrt(min(image) − max(image)): 0 for the constant warm-up frame, NaN for
 * any real image (max > min), which the anomaly reader turns into OSP_ERR_INFERENCE.
 */
function nanOnRealFrames(size: number): Uint8Array {
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'nan_on_real_frames' });
  b.input('image', 'float32', [1, 1, size, size])
    .initializer('zero', 'float32', [], [0])
    .initializer('score_shape', 'int64', [1], [1])
    .node('Mul', ['image', 'zero'], ['anomaly_map'])
    .node('ReduceMin', ['image'], ['lo'], { keepdims: 0 })
    .node('ReduceMax', ['image'], ['hi'], { keepdims: 0 })
    .node('Sub', ['lo', 'hi'], ['spread'])
    .node('Sqrt', ['spread'], ['root'])
    .node('ReduceMax', ['anomaly_map'], ['map_max'], { keepdims: 0 })
    .node('Add', ['map_max', 'root'], ['raw'])
    .node('Reshape', ['raw', 'score_shape'], ['score'])
    .output('anomaly_map', 'float32', [1, 1, size, size])
    .output('score', 'float32', [1]);
  return b.toBytes();
}

/** Builds every package once in a temp dir removed after the test file. */
export function usePackages(): Promise<TestPackages> {
  const root = mkdtemp(path.join(tmpdir(), 'osprey-pkgs-'));
  after(async () => rm(await root, { recursive: true, force: true }));
  return root.then(async (dir) => {
    const images = await Promise.all(Array.from({ length: 12 }, (_, i) => generatePartImage({ seed: 1 + i })));
    const v2Dir = path.join(dir, 'v2');
    const v3Dir = path.join(dir, 'v3');
    const nanDir = path.join(dir, 'nan');
    const brokenDir = path.join(dir, 'broken');
    const [localDir] = await Promise.all([
      ensureDemoModel(dir),
      fitBuiltinAnomalyModel(images, v2Dir, { name: NAME, version: '2.0.0', width: 64, height: 64 }),
      fitBuiltinAnomalyModel(images, v3Dir, { name: NAME, version: '3.0.0', width: 64, height: 64, margin: 0.35 }),
      writeModelPackage(nanDir, anomalyDraft('9.0.0-nan', 32), nanOnRealFrames(32)),
      writeModelPackage(brokenDir, anomalyDraft('9.0.1-broken', 32), Buffer.from('this is not an ONNX model')),
    ]);
    return {
      keys: generateSigningKeys(),
      localDir,
      v2: await pack(v2Dir, NAME, '2.0.0'),
      v3: await pack(v3Dir, NAME, '3.0.0'),
      nan: await pack(nanDir, NAME, '9.0.0-nan'),
      broken: await pack(brokenDir, NAME, '9.0.1-broken'),
    };
  });
}

/**
 * Serves a package and describes it as the fleet would in desired state, signed with
 * `privateKeyPem`. `bytes` replaces what is served (the sha256 and signature stay those of the
 * real archive).
 */
export function artifactFor(server: ArtifactServer, pkg: TestPackage, privateKeyPem: string, bytes?: Buffer): ModelArtifact {
  const url = server.add(bytes ?? pkg.archive, pkg.sha256);
  const identity = { name: pkg.name, version: pkg.version, sha256: pkg.sha256, size: pkg.archive.length };
  return { ...identity, url, signature: signArtifact({ ...identity, pluginSha256: null }, privateKeyPem) };
}

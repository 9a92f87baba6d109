/**
 * Occlusion maps on demand (issue 17, "explainability"): the fleet, not the edge, explains a
 * classifier's call on a kept image, since edges may be offline or unreachable. For one result it
 * finds the kept image and the registered model version that made the result, extracts that
 * version's package once into a cache directory (`<dataDir>/explain-cache/<sha256>`), computes the
 * map in a child process bounded in time and memory at the lowest CPU priority
 * (models/occlusion-run.ts), renders it as a heatmap PNG (models/postprocess/heatmap.ts) and
 * stores it in the image store as the result's `occlusion`. One computation at a time; another
 * request meanwhile is refused with OSP_ERR_BUSY (retry).
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import { extractArchive } from '../models/package-archive.js';
import { OCCLUSION_CELLS, occlusionHeat, type OcclusionMap } from '../models/occlusion.js';
import { occlusionInChild } from '../models/occlusion-run.js';
import { renderHeatmap } from '../models/postprocess/heatmap.js';
import type { ControlStore } from './control-store.js';
import type { FleetImageStore, ResultKey, StoredImage } from './image-store.js';
import type { Registry } from './registry.js';
import type { FleetStore } from './store.js';

export interface ExplainerOptions {
  results: Pick<FleetStore, 'getResult'>;
  images: FleetImageStore;
  control: Pick<ControlStore, 'getVersion'>;
  registry: Pick<Registry, 'localArtifact'>;
  /** Where extracted packages are cached (one directory per artifact sha256). */
  cacheDir: string;
  logger: Logger;
  /** Bounds of the child (default those of the registry's upload check). */
  timeoutMs?: number;
  maxRssBytes?: number;
  /** Cells per side (default 8). */
  cells?: number;
}

/** What a computation answers: the map's numbers and where its PNG is. */
export interface Explanation extends OcclusionMap {
  edgeId: string;
  storeId: string;
  seq: number;
  /** The model version that made the result (`name@version`). */
  model: string;
  /** The stored PNG. */
  image: StoredImage;
}

export interface Explainer {
  /**
   * Computes and stores the occlusion map of result (edge, seq) of `storeId` (undefined: the one
   * store that has an image for that seq). Throws a one-line OspreyError for a result without an
   * image, a model that is not a registered classifier, or while another map is being computed.
   */
  occlusion(edgeId: string, seq: number, storeId: string | undefined): Promise<Explanation>;
}

const describe = (k: { edgeId: string; seq: number; storeId?: string | undefined }) => `${k.edgeId}/${k.seq}${k.storeId ? ` (store ${k.storeId})` : ''}`;

export function createExplainer(opts: ExplainerOptions): Explainer {
  const log = opts.logger;
  const cells = opts.cells ?? OCCLUSION_CELLS;
  let running = false;

  /** The kept image of the result, with its store. */
  async function imageOf(edgeId: string, seq: number, storeId: string | undefined): Promise<StoredImage> {
    const found = storeId !== undefined ? [await opts.images.get({ edgeId, storeId, seq })].filter((i): i is StoredImage => i !== null) : await opts.images.find(edgeId, seq);
    if (found.length > 1) {
      throw new OspreyError('OSP_ERR_CONFLICT', `result ${describe({ edgeId, seq })} exists in ${found.length} stores of this edge; add ?store= (${found.map((i) => i.storeId || "''").join(', ')})`);
    }
    if (!found[0]) throw new OspreyError('OSP_ERR_NOT_FOUND', `result ${describe({ edgeId, seq, storeId })} has no kept image; an occlusion map needs one`);
    return found[0];
  }

  /** The package directory of a registered version, extracted once per artifact. */
  async function packageDir(sha256: string): Promise<string> {
    const dir = join(opts.cacheDir, sha256);
    if (await stat(join(dir, 'manifest.json')).catch(() => undefined)) return dir;
    await mkdir(opts.cacheDir, { recursive: true });
    // extractArchive writes a sibling temp dir and renames it: never a half-extracted package here.
    await extractArchive(await readFile(await opts.registry.localArtifact(sha256)), dir);
    return dir;
  }

  async function compute(edgeId: string, seq: number, storeId: string | undefined): Promise<Explanation> {
    const image = await imageOf(edgeId, seq, storeId);
    const key: ResultKey = { edgeId, storeId: image.storeId, seq };
    const result = await opts.results.getResult(edgeId, image.storeId, seq);
    if (!result) throw new OspreyError('OSP_ERR_NOT_FOUND', `result ${describe(key)} has an image but its result row has not reached the fleet yet; retry after the edge's results sync`);
    const at = result.model.lastIndexOf('@');
    const version = at > 0 ? await opts.control.getVersion(result.model.slice(0, at), result.model.slice(at + 1)) : null;
    if (!version) throw new OspreyError('OSP_ERR_NOT_FOUND', `model ${result.model} that made result ${describe(key)} is not in the registry; an occlusion map needs the registered package`);
    if (version.manifest.task !== 'classification') {
      throw new OspreyError('OSP_ERR_CONFLICT', `result ${describe(key)} was made by ${result.model} (task ${version.manifest.task}); occlusion maps are for classifiers`);
    }
    const dir = await packageDir(version.sha256);
    const started = Date.now();
    const map = await occlusionInChild(dir, image.file, {
      cells,
      what: `occlusion map of ${result.model}`,
      ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }),
      ...(opts.maxRssBytes !== undefined && { maxRssBytes: opts.maxRssBytes }),
    });
    const png = await renderHeatmap(occlusionHeat(map), map.cols, map.rows, 64);
    const stored = await opts.images.put(key, png, 'image/png', undefined, 'occlusion');
    log.info({ edgeId, storeId: key.storeId, seq, model: result.model, label: map.label, ms: Date.now() - started }, 'occlusion map computed');
    return { ...map, edgeId, storeId: key.storeId, seq, model: result.model, image: stored.image };
  }

  return {
    async occlusion(edgeId, seq, storeId) {
      if (running) throw new OspreyError('OSP_ERR_BUSY', 'another occlusion map is being computed; retry in a few seconds');
      running = true;
      try {
        return await compute(edgeId, seq, storeId);
      } finally {
        running = false;
      }
    },
  };
}

/** Removes the cache of extracted packages (they are re-extracted on demand). */
export async function clearExplainCache(cacheDir: string): Promise<void> {
  await rm(cacheDir, { recursive: true, force: true });
}

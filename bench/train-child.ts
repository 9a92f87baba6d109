/**
 * One training run under measurement, in its own process so its peak RSS is its own:
 * `node dist/bench/train-child.js '<json>'` with `{ kind: 'anomaly'|'classify', options }` (the
 * trainer's options, paths only). Prints one JSON line: the model card, wall seconds, peak RSS,
 * and for anomaly runs with `devRoot` the package's score of every dev image by class (through
 * the edge's runtime, as the line would see them).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadModelPackage } from '../models/package.js';
import { listImages } from '../models/train/extract.js';

interface Job {
  kind: 'anomaly' | 'classify';
  options: Record<string, unknown> & { out: string };
  /** Folder of <class>/ image folders scored after training (anomaly). */
  devRoot?: string;
}

async function devScores(pkg: string, root: string): Promise<Record<string, number[]>> {
  const runner = await loadModelPackage(pkg, { intraOpThreads: 1 });
  const out: Record<string, number[]> = {};
  try {
    for (const cls of (await readdir(root)).sort()) {
      out[cls] = [];
      for (const f of await listImages(join(root, cls))) out[cls].push((await runner.inspect(await readFile(f))).score);
    }
  } finally {
    await runner.close();
  }
  return out;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const t0 = performance.now();
const { card } =
  job.kind === 'anomaly'
    ? await (await import('../models/train/train-anomaly.js')).trainAnomaly(job.options as never)
    : await (await import('../models/train/train-classify.js')).trainClassify(job.options as never);
const wallS = (performance.now() - t0) / 1000;
const maxRssBytes = process.resourceUsage().maxRSS * 1024;
const dev = job.devRoot ? await devScores(job.options.out, job.devRoot) : undefined;
process.stdout.write(`${JSON.stringify({ card, wallS, maxRssBytes, dev })}\n`);

/** `osprey infer --model DIR IMAGE...`: the edge's exact pipeline, one JSON line per image. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { loadModelPackage, renderHeatmap } from '../models/runtime.js';
import { OspreyError, oneLine } from '../protocol/errors.js';
import { ThresholdValueSchema } from '../protocol/messages.js';
import { check } from '../protocol/validator.js';
import { parse } from './args.js';

export const inferHelp = `Usage: osprey infer --model DIR IMAGE...

Runs the model package in DIR on each image exactly as the edge agent does and prints one JSON
line per image: {file, verdict, label, score, threshold, detections?, latencyMs}.
An image that cannot be inspected prints {file, error, message}; the exit code is then 1.

Options:
  --model DIR        model package directory (manifest.json + model.onnx)
  --threshold X      override the package's default threshold (0 to 1)
  --heatmaps DIR     anomaly models: write a small heatmap PNG of each defect image to DIR
                     (<image name>.heatmap.png) and name it in the line as "heatmap"
  -h, --help         this text`;

/** Runs the command; returns the process exit code. */
export async function inferCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { model: { type: 'string' }, threshold: { type: 'string' }, heatmaps: { type: 'string' } }, true);
  if (values.help) {
    console.log(inferHelp);
    return 0;
  }
  if (!values.model) throw new OspreyError('OSP_ERR_USAGE', 'infer needs --model DIR');
  if (positionals.length === 0) throw new OspreyError('OSP_ERR_USAGE', 'infer needs at least one IMAGE');
  let threshold: number | undefined;
  if (values.threshold !== undefined) {
    threshold = values.threshold.trim() === '' ? NaN : Number(values.threshold);
    if (!Number.isFinite(threshold) || !check(ThresholdValueSchema, threshold).ok) {
      throw new OspreyError('OSP_ERR_USAGE', `--threshold must be a number from 0 to 1, got "${values.threshold}"`);
    }
  }
  const heatmaps = values.heatmaps;
  if (heatmaps) await mkdir(heatmaps, { recursive: true });
  const runner = await loadModelPackage(values.model);
  let failures = 0;
  try {
    for (const file of positionals) {
      try {
        const bytes = await readFile(file);
        const started = performance.now();
        const r = await runner.inspect(bytes, {
          ...(threshold !== undefined && { thresholds: { default: threshold } }),
          ...(heatmaps && { heatmap: true }),
        });
        const latencyMs = Math.round((performance.now() - started) * 100) / 100;
        const line: Record<string, unknown> = { file, verdict: r.verdict, label: r.label, score: r.score, threshold: r.threshold };
        if (r.detections) line.detections = r.detections;
        if (r.top) line.top = r.top;
        line.latencyMs = latencyMs;
        if (heatmaps && r.anomalyMap) {
          line.heatmap = join(heatmaps, `${basename(file)}.heatmap.png`);
          await writeFile(line.heatmap as string, await renderHeatmap(r.anomalyMap.values, r.anomalyMap.width, r.anomalyMap.height));
        }
        console.log(JSON.stringify(line));
      } catch (err) {
        failures++;
        const code = err instanceof OspreyError ? err.code : ((err as NodeJS.ErrnoException).code ?? 'ERROR');
        console.log(JSON.stringify({ file, error: code, message: oneLine(err) }));
      }
    }
  } finally {
    await runner.close();
  }
  return failures === 0 ? 0 : 1;
}

/**
 * The model card written beside a trained package's manifest (model-card.json): what the model
 * was trained on (counts, a sha256 of the sorted image list and bytes), the backbone and its
 * hash, the method and hyper-parameters, calibration, validation figures, the operating point,
 * the tool version and when. Plain JSON: the fleet and people read it as it is.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { sha256Hex } from '../package-reader.js';

export const MODEL_CARD_FILE = 'model-card.json';
/** The golden set's index beside the manifest (golden-set.ts writes it). */
export const GOLDEN_FILE = 'golden.json';
export const MODEL_CARD_SCHEMA = 'osprey-model-card/1';

/** sha256 over the sorted lines "relative name NUL sha256(bytes)": the same images give the same hash wherever they live. */
export function imageSetHash(root: string, files: readonly string[], bytes: readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const line of files.map((f, i) => `${relative(root, f)}\0${sha256Hex(bytes[i])}\n`).sort()) h.update(line);
  return h.digest('hex');
}

/** Writes `card` (with its schema and creation time) to DIR/model-card.json; returns what was written. */
export async function writeModelCard(dir: string, card: Record<string, unknown>): Promise<Record<string, unknown>> {
  const full = { schema: MODEL_CARD_SCHEMA, ...card, createdAt: new Date().toISOString() };
  await writeFile(join(dir, MODEL_CARD_FILE), `${JSON.stringify(full, null, 2)}\n`);
  return full;
}

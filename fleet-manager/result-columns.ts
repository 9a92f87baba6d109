/**
 * A result batch as columns: how an ingest batch crosses to the storage thread. Structured clone
 * of 500 result objects writes every key of every object and reads them back one by one (about
 * 5 µs a result on the dev machine, more than the rest of ingest on the main thread); numbers in
 * one Float64Array and strings in plain arrays cost about a third of it (bench/fleet-ingest.ts).
 */
import type { ResultRecord } from '../protocol/messages.js';

/** Numbers per row in `num`: seq, ts, score, latencyMs. */
const NUMS = 4;

export interface ResultColumns {
  num: Float64Array;
  camera: string[];
  source: ResultRecord['source'][];
  model: string[];
  verdict: ResultRecord['verdict'][];
  label: string[];
  /** null: the row has no frame. */
  frame: (string | null)[];
  /** Rows with detections or a shadow outcome (few), whole, by row index; null when none. */
  whole: Map<number, ResultRecord> | null;
}

/** The batch as columns (see the file comment); unpackResults gives equal records back. */
export function packResults(results: readonly ResultRecord[]): ResultColumns {
  const n = results.length;
  const num = new Float64Array(n * NUMS);
  const camera: string[] = new Array<string>(n);
  const source: ResultRecord['source'][] = new Array<ResultRecord['source']>(n);
  const model: string[] = new Array<string>(n);
  const verdict: ResultRecord['verdict'][] = new Array<ResultRecord['verdict']>(n);
  const label: string[] = new Array<string>(n);
  const frame: (string | null)[] = new Array<string | null>(n);
  let whole: Map<number, ResultRecord> | null = null;
  for (let i = 0; i < n; i++) {
    const r = results[i]!;
    // Anything beyond the common shape (explicit undefineds included) goes whole, so it comes back equal.
    if (r.detections !== undefined || r.shadow !== undefined || 'detections' in r || 'shadow' in r || (r.frame === undefined && 'frame' in r)) {
      (whole ??= new Map()).set(i, r);
    }
    const o = i * NUMS;
    num[o] = r.seq;
    num[o + 1] = r.ts;
    num[o + 2] = r.score;
    num[o + 3] = r.latencyMs;
    camera[i] = r.camera;
    source[i] = r.source;
    model[i] = r.model;
    verdict[i] = r.verdict;
    label[i] = r.label;
    frame[i] = r.frame ?? null;
  }
  return { num, camera, source, model, verdict, label, frame, whole };
}

/** The records again, in order. */
export function unpackResults(c: ResultColumns): ResultRecord[] {
  const n = c.camera.length;
  const out: ResultRecord[] = new Array<ResultRecord>(n);
  for (let i = 0; i < n; i++) {
    const kept = c.whole?.get(i);
    if (kept) {
      out[i] = kept;
      continue;
    }
    const o = i * NUMS;
    const frame = c.frame[i];
    out[i] =
      frame === null
        ? { seq: c.num[o]!, ts: c.num[o + 1]!, camera: c.camera[i]!, source: c.source[i]!, model: c.model[i]!, verdict: c.verdict[i]!, label: c.label[i]!, score: c.num[o + 2]!, latencyMs: c.num[o + 3]! }
        : { seq: c.num[o]!, ts: c.num[o + 1]!, camera: c.camera[i]!, source: c.source[i]!, frame, model: c.model[i]!, verdict: c.verdict[i]!, label: c.label[i]!, score: c.num[o + 2]!, latencyMs: c.num[o + 3]! };
  }
  return out;
}

/**
 * A result batch as columns: how an ingest batch crosses to the storage thread. Structured clone
 * of 500 result objects writes every key of every object and reads them back one by one (about
 * 5 µs a result on the dev machine, more than the rest of ingest on the main thread); numbers in
 * one Float64Array and strings in plain arrays cost about a third of it (bench/fleet-ingest.ts).
 */
import type { ResultRecord } from '../protocol/messages.js';

/** Numbers per row in `num`: seq, ts, score, latencyMs. */
const NUMS = 4;
/** Strings per row in `codes`, as indexes into `words`: camera, source, model, verdict, label. */
const WORDS = 5;

export interface ResultColumns {
  num: Float64Array;
  /**
   * The batch's distinct cameras, sources, models, verdicts and labels, once each: a batch
   * repeats a handful of them, and a string array crosses as every string copied one by one.
   */
  words: string[];
  codes: Uint32Array;
  /** null: the row has no frame. */
  frame: (string | null)[];
  /** Rows with detections or a shadow outcome (few), whole, by row index; null when none. */
  whole: Map<number, ResultRecord> | null;
}

/** The batch as columns (see the file comment); unpackResults gives equal records back. */
export function packResults(results: readonly ResultRecord[]): ResultColumns {
  const n = results.length;
  const num = new Float64Array(n * NUMS);
  const codes = new Uint32Array(n * WORDS);
  const words: string[] = [];
  const index = new Map<string, number>();
  const code = (word: string): number => {
    let i = index.get(word);
    if (i === undefined) {
      i = words.push(word) - 1;
      index.set(word, i);
    }
    return i;
  };
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
    const w = i * WORDS;
    codes[w] = code(r.camera);
    codes[w + 1] = code(r.source);
    codes[w + 2] = code(r.model);
    codes[w + 3] = code(r.verdict);
    codes[w + 4] = code(r.label);
    frame[i] = r.frame ?? null;
  }
  return { num, words, codes, frame, whole };
}

/** The records again, in order. */
export function unpackResults(c: ResultColumns): ResultRecord[] {
  const n = c.frame.length;
  const words = c.words;
  const out: ResultRecord[] = new Array<ResultRecord>(n);
  for (let i = 0; i < n; i++) {
    const kept = c.whole?.get(i);
    if (kept) {
      out[i] = kept;
      continue;
    }
    const o = i * NUMS;
    const w = i * WORDS;
    const frame = c.frame[i];
    const camera = words[c.codes[w]!]!;
    const source = words[c.codes[w + 1]!] as ResultRecord['source'];
    const model = words[c.codes[w + 2]!]!;
    const verdict = words[c.codes[w + 3]!] as ResultRecord['verdict'];
    const label = words[c.codes[w + 4]!]!;
    out[i] =
      frame === null
        ? { seq: c.num[o]!, ts: c.num[o + 1]!, camera, source, model, verdict, label, score: c.num[o + 2]!, latencyMs: c.num[o + 3]! }
        : { seq: c.num[o]!, ts: c.num[o + 1]!, camera, source, frame, model, verdict, label, score: c.num[o + 2]!, latencyMs: c.num[o + 3]! };
  }
  return out;
}

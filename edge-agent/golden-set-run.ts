/**
 * One golden-set self-test of one model (issue 17): reads the golden set its package carries
 * (golden.json and the images beside the manifest, written by models/train/golden-set.ts), runs
 * every image through the model's own runner — the package's thresholds, not the edge's, exactly
 * as the expected answers were made — one at a time, yielding to the line between images, and
 * compares each answer with the expected one and with the truth.
 *
 * Pass rule: every image gets its expected verdict and label and a score within the golden set's
 * `tolerance`. Then the accuracy against the truth equals `expectedAccuracy` by construction, so
 * a changed model, runtime or pre-processing shows up as a failure even when it happens to be
 * "more accurate". An image that cannot be read, has another sha256 than golden.json says, or
 * fails to inspect is a mismatch; a run past its time limit fails.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { oneLine } from '../protocol/errors.js';
import { GOLDEN_MAX_OUTCOMES, type GoldenImageOutcome } from '../protocol/monitoring.js';
import { check } from '../protocol/validator.js';
import { sha256Hex } from '../models/package-reader.js';
import { GOLDEN_FILE, GOLDEN_SCHEMA, matchesTruth } from '../models/train/golden-set.js';
import type { ModelRunner } from '../models/types.js';
import { withTimeout } from '../protocol/timeout.js';

const Answer = Type.Object({
  verdict: Type.Union([Type.Literal('ok'), Type.Literal('defect')]),
  label: Type.String(),
  score: Type.Number(),
});

/** golden.json as the trainer writes it (extra fields are tolerated: a newer trainer may add some). */
export const GoldenFileSchema = Type.Object({
  schema: Type.Literal(GOLDEN_SCHEMA),
  tolerance: Type.Number({ minimum: 0 }),
  expectedAccuracy: Type.Number({ minimum: 0, maximum: 1 }),
  images: Type.Array(
    Type.Object({
      file: Type.String({ pattern: '^[A-Za-z0-9._-]+$', maxLength: 100 }),
      source: Type.Optional(Type.String()),
      sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
      truth: Type.Union([Type.Object({ verdict: Type.Union([Type.Literal('ok'), Type.Literal('defect')]) }), Type.Object({ label: Type.String() })]),
      expected: Answer,
    }),
    { minItems: 1, maxItems: 64 },
  ),
});
export type GoldenFile = Static<typeof GoldenFileSchema>;

/** What reading a package's golden set found. */
export type GoldenSetRead = { kind: 'none' } | { kind: 'set'; golden: GoldenFile } | { kind: 'invalid'; reason: string };

/** Reads `dir`/golden.json: none when the package carries no golden set, invalid (with why) when it is unreadable. */
export async function readGoldenSet(dir: string): Promise<GoldenSetRead> {
  let text: string;
  try {
    text = await readFile(join(dir, GOLDEN_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    return { kind: 'invalid', reason: `${GOLDEN_FILE}: ${oneLine(err)}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', reason: `${GOLDEN_FILE} is not JSON: ${oneLine(err)}` };
  }
  const checked = check(GoldenFileSchema, value);
  if (!checked.ok) return { kind: 'invalid', reason: `${GOLDEN_FILE}: ${checked.error}`.slice(0, 300) };
  return { kind: 'set', golden: checked.value };
}

export interface GoldenRunResult {
  passed: boolean;
  accuracy: number;
  expectedAccuracy: number;
  images: number;
  mismatches: number;
  reason?: string;
  /** Per image, in golden.json order (at most GOLDEN_MAX_OUTCOMES). */
  outcomes: GoldenImageOutcome[];
}

export interface GoldenRunOptions {
  /** The whole run's limit; images not reached by then count as mismatches. */
  timeoutMs: number;
  /** Stops between images (the agent closing); the result is then of no use and not reported. */
  signal?: AbortSignal;
  now?: () => number;
}

const truthOf = (t: GoldenFile['images'][number]['truth']) => ('verdict' in t ? t.verdict : t.label);
const round = (x: number) => Math.round(x * 1e6) / 1e6;

/** Runs `runner` over the golden set in `dir`, sequentially, within `timeoutMs`. */
export async function runGoldenSet(runner: ModelRunner, dir: string, golden: GoldenFile, opts: GoldenRunOptions): Promise<GoldenRunResult> {
  const now = opts.now ?? (() => performance.now());
  const deadline = now() + opts.timeoutMs;
  const outcomes: GoldenImageOutcome[] = [];
  let mismatches = 0;
  let correct = 0;
  let timedOut = false;
  const firstProblem: string[] = [];
  for (const img of golden.images) {
    // Frames of the line go first: one golden image at a time, after whatever is queued.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const base = { file: img.file, ...(img.source !== undefined && { source: img.source.slice(0, 200) }), truth: truthOf(img.truth).slice(0, 64), expected: img.expected };
    let got: GoldenImageOutcome['got'] = null;
    let error: string | undefined;
    const left = deadline - now();
    if (opts.signal?.aborted) {
      error = 'not run: stopped';
    } else if (timedOut || left <= 0) {
      timedOut = true;
      error = 'not run: time limit reached';
    } else {
      try {
        const bytes = await readFile(join(dir, img.file));
        if (sha256Hex(bytes) !== img.sha256) throw new Error(`${img.file} is not the image golden.json describes (sha256 differs)`);
        const r = await withTimeout(runner.inspect(bytes), left, () => null);
        if (r === null) {
          timedOut = true;
          error = 'not run: time limit reached';
        } else {
          got = { verdict: r.verdict, label: (r.top?.[0]?.label ?? r.label).slice(0, 64), score: r.score };
          if (matchesTruth(r, img.truth)) correct++;
        }
      } catch (err) {
        error = oneLine(err).slice(0, 200);
      }
    }
    const e = img.expected;
    // The tolerance is on the score scale; 1e-9 absorbs float noise around an exact bound.
    const match = got !== null && got.verdict === e.verdict && got.label === e.label && Math.abs(got.score - e.score) <= golden.tolerance + 1e-9;
    if (!match) {
      mismatches++;
      if (firstProblem.length === 0) {
        firstProblem.push(
          got === null
            ? `${img.file}: ${error}`
            : `${img.file}: ${got.verdict}/${got.label} score ${round(got.score)}, expected ${e.verdict}/${e.label} score ${round(e.score)} ± ${golden.tolerance}`,
        );
      }
    }
    if (outcomes.length < GOLDEN_MAX_OUTCOMES) {
      outcomes.push({ ...base, got: got && { ...got, score: round(got.score) }, match, correct: got !== null && matchesTruth({ verdict: got.verdict, label: got.label }, img.truth), ...(error !== undefined && { error }) });
    }
  }
  const images = golden.images.length;
  const passed = mismatches === 0;
  const reason = passed
    ? undefined
    : `${timedOut ? `time limit of ${opts.timeoutMs} ms reached; ` : ''}${mismatches} of ${images} images off their expected answer (first: ${firstProblem[0]})`.slice(0, 300);
  return { passed, accuracy: correct / images, expectedAccuracy: golden.expectedAccuracy, images, mismatches, ...(reason !== undefined && { reason }), outcomes };
}

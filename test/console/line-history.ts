/**
 * A line's past, as real edges send it: results with past timestamps, one a minute per edge,
 * an old model version until `switchAt` and a new one after, over MQTT through SimEdge (the
 * fleet's real ingest). Expected figures are counted from the very records sent.
 */
import type { ResultRecord } from '../../protocol/messages.js';
import type { SimEdge } from '../helpers/sim-edge.js';

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;

export type PastResult = Omit<ResultRecord, 'seq'>;

export interface HistoryOptions {
  from: number;
  to: number;
  switchAt: number;
  oldModel: string;
  newModel: string;
  /** About one in n results of a model is a defect. */
  defectEvery: { old: number; new: number };
  /** Shifts each record's ts within its minute (ms), so two edges do not collide exactly. */
  offsetMs?: number;
}

/** One result a minute in [from, to); a defect is labelled scratch or dent. */
export function pastResults(o: HistoryOptions): PastResult[] {
  const out: PastResult[] = [];
  let n = 0;
  for (let ts = o.from + (o.offsetMs ?? 0); ts < o.to; ts += MINUTE, n++) {
    const isNew = ts >= o.switchAt;
    const every = isNew ? o.defectEvery.new : o.defectEvery.old;
    // A fixed pseudo-random draw (the same every run): about one in `every` is a defect.
    const draw = Math.abs(Math.sin((n + 1) * 12.9898 + (o.offsetMs ?? 0) * 78.233) * 43758.5453) % 1;
    const defect = draw < 1 / every;
    out.push({
      ts,
      camera: 'cam1',
      source: 'simulated',
      model: isNew ? o.newModel : o.oldModel,
      verdict: defect ? 'defect' : 'ok',
      label: defect ? (n % 2 === 0 ? 'scratch' : 'dent') : 'good',
      score: defect ? 0.9 : 0.1,
      latencyMs: 12,
    });
  }
  return out;
}

/** Sends the records in batches and waits for each batch's ack (stored). */
export async function sendPast(edge: SimEdge, records: readonly PastResult[], batch = 500): Promise<void> {
  for (let i = 0; i < records.length; i += batch) await edge.sendResults(records.slice(i, i + batch));
}

/** Counts of the records in [from, to). */
export function countIn(records: readonly PastResult[], from: number, to: number): { total: number; defect: number } {
  const inside = records.filter((r) => r.ts >= from && r.ts < to);
  return { total: inside.length, defect: inside.filter((r) => r.verdict === 'defect').length };
}

/** What the fleet believes about how far an edge's result store has got (edge views, image uploads). */
import type { EdgeRecord } from './store.js';

/**
 * The highest seq the edge has produced in its current store, or null before it reported one.
 * The freshest report counts (after a wiped edge database the old store's higher seqs are
 * history), a state naming another store (a retained replay) does not, and it is never below what
 * the fleet already holds: telemetry is sent every few seconds while acks move on every batch.
 */
export function lastSeqOf(e: EdgeRecord): number | null {
  const reports: { lastSeq: number; ts: number }[] = [];
  const t = e.telemetry;
  if (t) reports.push({ lastSeq: t.lastSeq, ts: t.ts });
  const s = e.state;
  if (typeof s?.lastSeq === 'number' && (s.storeId === undefined || s.storeId === e.storeId)) {
    reports.push({ lastSeq: s.lastSeq, ts: s.ts ?? 0 });
  }
  if (reports.length === 0) return null;
  reports.sort((a, b) => b.ts - a.ts);
  return Math.max(reports[0]!.lastSeq, e.ackedSeq);
}

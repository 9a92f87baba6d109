/**
 * Feeds the edges' `golden-set` events into the golden-set store (issue 17). Called from ingest's
 * onReport, after the event itself is stored with the edge's events; the store write is
 * synchronous SQLite, so the rollout engine's next look (ingest pokes it right after) sees it.
 */
import type { Logger } from 'pino';
import { GoldenSetEventDataSchema } from '../protocol/monitoring.js';
import { check } from '../protocol/validator.js';
import type { GoldenSetStore } from './golden-set-store.js';
import type { InboundReport } from './ingest.js';

/** Returns ingest's listener for golden-set events: a malformed one is logged and left out. */
export function goldenSetReportListener(store: GoldenSetStore, log: Logger): (report: InboundReport) => void {
  return (report) => {
    if (report.kind !== 'events' || report.message.kind !== 'golden-set') return;
    const checked = check(GoldenSetEventDataSchema, report.message.data ?? {});
    if (!checked.ok) {
      log.warn({ edgeId: report.edgeId, reason: checked.error }, 'golden-set event not stored: its data does not fit the report schema');
      return;
    }
    store.record(report.edgeId, checked.value, report.meta.receivedAt).catch((err: unknown) => log.error({ err, edgeId: report.edgeId }, 'golden-set report not stored'));
  };
}

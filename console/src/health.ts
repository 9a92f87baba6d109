/**
 * An edge's health at a glance. Offline: its broker connection is gone (its will said so, or it
 * said goodbye). Stale: it is connected but its telemetry is older than three of its own
 * reporting periods, so its figures are not live and are shown greyed. Online otherwise.
 */
import type { EdgeView } from './api.js';

export type Health = 'online' | 'stale' | 'offline';

/** Telemetry periods an edge may miss before its figures count as stale. */
export const STALE_PERIODS = 3;
/** The edge agent's default telemetry period, for an edge that has sent none yet. */
const DEFAULT_PERIOD_MS = 10_000;

/** The edge's health at `now` (the fleet's clock, epoch ms). */
export function edgeHealth(e: EdgeView, now: number): Health {
  if (!e.online) return 'offline';
  const t = e.telemetry;
  const since = t ? t.at : e.lastSeen;
  const period = t && t.intervalMs > 0 ? t.intervalMs : DEFAULT_PERIOD_MS;
  return now - since > STALE_PERIODS * period ? 'stale' : 'online';
}

/**
 * The golden-set schedule's check, shared by the fleet (a bad expression is a 400 naming the
 * field) and the edge (a bad one keeps the previous schedule). Kept out of messages.ts so the
 * console bundle does not pull node-cron in.
 */
import { validateDetailed } from 'node-cron';

/** Why `expr` is not a node-cron expression, in one line; null when it is one. */
export function cronScheduleError(expr: string): string | null {
  const v = validateDetailed(expr);
  if (v.valid) return null;
  const first = v.errors[0];
  return `"${expr.slice(0, 100)}" is not a node-cron expression${first ? ` (${first.message})` : ''}`;
}

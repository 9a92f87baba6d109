/**
 * `osprey edge token`: a one-time, expiring enrollment token made on the fleet host (the same
 * token an admin gets from `POST /api/enrollment-tokens`), for `osprey edge enroll` on the edge.
 */
import { OspreyError } from '../protocol/errors.js';
import { FLEET_DEFAULTS } from '../fleet-manager/config.js';
import { isValidEdgeId } from '../protocol/topics.js';
import { intOption, parse } from './args.js';
import { withIdentity } from './user.js';

export const edgeTokenHelp = `Usage: osprey edge token (--edge-id ID | --line LINE) [--minutes N] [--data DIR]

An enrollment token, printed once on stdout: the edge exchanges it for its own credential with
"osprey edge enroll". A token for --edge-id enrolls (or re-enrolls) that edge; one for --line
enrolls one new edge of that line. It is spent on first use and expires after N minutes.

Options:
  --edge-id ID   the edge it enrolls
  --line LINE    or: any one new edge, recorded as of this line
  --minutes N    lifetime (default 60, at most 10080)
  --data DIR     the fleet's data directory (default: ${FLEET_DEFAULTS.dataDir})`;

export async function edgeTokenCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'edge-id': { type: 'string' }, line: { type: 'string' }, minutes: { type: 'string' }, data: { type: 'string' } });
  if (values.help) return (console.log(edgeTokenHelp), 0);
  const edgeId = values['edge-id'] ?? null;
  const line = values.line ?? null;
  if ((edgeId === null) === (line === null)) throw new OspreyError('OSP_ERR_USAGE', 'osprey edge token needs --edge-id ID or --line LINE (one of them)');
  if (edgeId !== null && !isValidEdgeId(edgeId)) throw new OspreyError('OSP_ERR_USAGE', `--edge-id "${edgeId}" is not a valid edge id`);
  if (line !== null && (line.length === 0 || line.length > 128)) throw new OspreyError('OSP_ERR_USAGE', '--line must have 1 to 128 characters');
  const minutes = intOption('minutes', values.minutes, 60, 1, 10_080);
  return withIdentity(values.data, async (identity) => {
    const { token, record } = await identity.createEnrollmentToken({ edgeId, line, ttlMs: minutes * 60_000, createdBy: 'cli' });
    // Alone on stdout, so `$(osprey edge token …)` captures it.
    console.log(token);
    console.error(`enrollment token ${record.id} for ${edgeId !== null ? `edge ${edgeId}` : `one new edge of line ${line}`}, one use, expires ${new Date(record.expiresAt).toISOString()}`);
    return { action: 'enrollment-token.create', target: `enrollment-token:${record.id}`, after: { edgeId, line, expiresAt: record.expiresAt } };
  });
}

/**
 * "Roll back this line": every edge of the line returns to the version it ran before
 * (`POST /api/lines/:line/rollback`), and any rollout on it is paused. Shown only to those whose
 * session may (`rollouts:control`); embeddable in any line context: `<LineRollback api session line />`.
 */
import { useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import { Confirm } from './confirm.js';

interface LineRollbackResult {
  line: string;
  edges: { edgeId: string; from: string | null; to: string | null }[];
  pausedRollouts: string[];
}

export function LineRollback({ api, session, line, onDone }: { api: Api; session: SessionInfo; line: string; onDone?: (r: LineRollbackResult) => void }) {
  const [asking, setAsking] = useState(false);
  const [done, setDone] = useState<LineRollbackResult | null>(null);
  if (!session.permissions.includes('rollouts:control')) return null;
  return (
    <span class="line-rollback">
      <button type="button" class="danger" onClick={() => setAsking(true)}>
        Roll back {line}
      </button>
      {done && (
        <span class="muted" role="status">
          {done.edges.length === 0 ? ' Nothing to roll back.' : ` ${done.edges.map((e) => `${e.edgeId}: ${e.to ?? 'its local model'}`).join(', ')}`}
        </span>
      )}
      {asking && (
        <Confirm
          title={`Roll back line ${line}?`}
          confirmLabel={`Roll back ${line}`}
          danger
          onClose={() => setAsking(false)}
          onConfirm={async () => {
            const r = await api.post<LineRollbackResult>(`/api/lines/${encodeURIComponent(line)}/rollback`);
            setDone(r);
            onDone?.(r);
          }}
        >
          <p>
            Every edge of <strong>{line}</strong> goes back to the model version it ran before its last change. A rollout that still runs on this line is paused and
            leaves these edges; it can be resumed for its other edges.
          </p>
        </Confirm>
      )}
    </span>
  );
}

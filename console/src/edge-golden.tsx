/**
 * The edge's golden-set self-tests (issue 17): the latest result per model version from
 * `GET /api/edges/:id/golden-set`, each with its per-image outcomes behind a disclosure.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, EdgeView } from './api.js';
import { clock, num } from './format.js';

interface Answer {
  verdict: string;
  label: string;
  score: number;
}
interface Outcome {
  file: string;
  source?: string;
  truth: string;
  expected: Answer;
  got: Answer | null;
  match: boolean;
  correct: boolean;
  error?: string;
}
interface Report {
  model: string;
  role: 'active' | 'shadow';
  trigger: string;
  ranAt: number;
  passed: boolean | null;
  accuracy: number | null;
  expectedAccuracy: number | null;
  images: number;
  mismatches: number;
  reason?: string;
  outcomes: Outcome[];
}

const result = (r: Report) => (r.passed === null ? 'none' : r.passed ? 'passed' : 'failed');
const pct = (v: number | null) => (v === null ? '–' : `${num(v * 100, 1)} %`);
const answer = (a: Answer | null) => (a ? `${a.verdict} ${a.label} ${num(a.score, 4)}` : '–');

export function EdgeGoldenSets({ api, edge }: { api: Api; edge: EdgeView }) {
  const [reports, setReports] = useState<Report[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Re-read when the edge reports again, at most every 5 s (as the events).
  const tick = Math.floor(edge.lastSeen / 5000);
  useEffect(() => {
    let gone = false;
    api.get<{ reports: Report[] }>(`/api/edges/${encodeURIComponent(edge.id)}/golden-set`).then(
      (r) => !gone && (setReports(r.reports), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, edge.id, tick]);
  return (
    <section class="events golden-sets" data-testid="golden-sets">
      <h2>Golden-set self-tests</h2>
      {error && <p class="error">{error}</p>}
      {reports && reports.length === 0 && <p class="muted">No golden-set run reported yet.</p>}
      {reports && reports.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Model</th>
              <th>Ran</th>
              <th>Result</th>
              <th>Accuracy (expected)</th>
              <th>Images off</th>
              <th>Outcomes</th>
            </tr>
          </thead>
          <tbody>
            {reports.map((r) => (
              <tr key={r.model} data-model={r.model} data-result={result(r)} class={r.passed === false ? 'level-error' : ''}>
                <td>
                  {r.model} <span class="muted">({r.role})</span>
                </td>
                <td class="seen">
                  {clock(r.ranAt)} <span class="muted">{r.trigger}</span>
                </td>
                <td title={r.reason ?? ''}>{result(r)}</td>
                <td>
                  {pct(r.accuracy)} ({pct(r.expectedAccuracy)})
                </td>
                <td>
                  {r.mismatches} of {r.images}
                </td>
                <td>
                  {r.outcomes.length > 0 ? (
                    <details>
                      <summary>{r.outcomes.length} images</summary>
                      <table>
                        <thead>
                          <tr>
                            <th>Image</th>
                            <th>Truth</th>
                            <th>Expected</th>
                            <th>Got</th>
                            <th>Match</th>
                          </tr>
                        </thead>
                        <tbody>
                          {r.outcomes.map((o) => (
                            <tr key={o.file} data-match={String(o.match)}>
                              <td class="mono">{o.source ?? o.file}</td>
                              <td>{o.truth}</td>
                              <td>{answer(o.expected)}</td>
                              <td>{o.got ? answer(o.got) : (o.error ?? '–')}</td>
                              <td>{o.match ? 'yes' : 'no'}</td>
                            </tr>
                          ))}
                        </tbody>
                      </table>
                    </details>
                  ) : (
                    <span class="muted">{r.reason ?? '–'}</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

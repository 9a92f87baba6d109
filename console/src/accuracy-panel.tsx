/**
 * A line's accuracy as inspectors found it (`GET /api/lines/:line/accuracy`): false-call rate,
 * confirmed defect rate and the review counts, for the line and per model version. Shown on the
 * review screen and meant for the line page; `version` changes make it read the figures again.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api } from './api.js';
import type { Accuracy, AccuracyFigures } from '../../fleet-manager/review-schemas.js';
import { num } from './format.js';

const pct = (v: number | null) => (v === null ? '–' : `${num(v * 100, 1)} %`);

export function AccuracyPanel({
  api,
  line,
  version = 0,
  compact = false,
}: {
  api: Api;
  line: string;
  /** Bump to re-read (after a review). */
  version?: number;
  /** Narrow (a side column): the figures two by two and per version only the rates. */
  compact?: boolean;
}) {
  const [acc, setAcc] = useState<Accuracy | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let gone = false;
    api.get<Accuracy>(`/api/lines/${encodeURIComponent(line)}/accuracy`).then(
      (a) => !gone && (setAcc(a), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, line, version]);
  return (
    <section class={`accuracy-panel ${compact ? 'compact' : ''}`} data-testid="accuracy" data-line={line}>
      <h2>Accuracy on {line}</h2>
      {error && <p class="error">{error}</p>}
      {acc && acc.total.reviewed === 0 && <p class="muted">No frame of this line has been reviewed yet.</p>}
      {acc && acc.total.reviewed > 0 && (
        <>
          <div class="accuracy-figures">
            <Figure name="False-call rate" value={pct(acc.total.falseCallRate)} testid="false-call-rate" note={`${acc.total.falseCalls} of ${acc.total.defectCalls} defect calls`} />
            <Figure name="Confirmed defect rate" value={pct(acc.total.confirmedDefectRate)} testid="confirmed-defect-rate" note={`${acc.total.confirmedDefects} of ${acc.total.defectCalls} defect calls`} />
            <Figure name="Missed defects" value={String(acc.total.missedDefects)} testid="missed-defects" note={`in ${acc.total.okCalls} reviewed ok calls`} />
            <Figure name="Reviewed" value={String(acc.total.reviewed)} testid="reviewed" note={`${acc.total.relabelled} relabelled`} />
          </div>
          <table class="accuracy-versions">
            <thead>
              {compact ? (
                <tr>
                  <th>Model version</th>
                  <th class="num">Reviewed</th>
                  <th class="num">False-call rate</th>
                </tr>
              ) : (
                <tr>
                  <th>Model version</th>
                  <th class="num">Reviewed</th>
                  <th class="num">Defect calls</th>
                  <th class="num">False calls</th>
                  <th class="num">False-call rate</th>
                  <th class="num">Confirmed defect rate</th>
                  <th class="num">Relabelled</th>
                  <th class="num">Missed defects</th>
                </tr>
              )}
            </thead>
            <tbody>
              {acc.versions.map((v: AccuracyFigures) =>
                compact ? (
                  <tr key={v.model} data-model={v.model}>
                    <td class="model">{v.model}</td>
                    <td class="num">{v.reviewed}</td>
                    <td class="num">{pct(v.falseCallRate)}</td>
                  </tr>
                ) : (
                <tr key={v.model} data-model={v.model}>
                  <td class="model">{v.model}</td>
                  <td class="num">{v.reviewed}</td>
                  <td class="num">{v.defectCalls}</td>
                  <td class="num">{v.falseCalls}</td>
                  <td class="num">{pct(v.falseCallRate)}</td>
                  <td class="num">{pct(v.confirmedDefectRate)}</td>
                  <td class="num">{v.relabelled}</td>
                  <td class="num">{v.missedDefects}</td>
                </tr>
                ),
              )}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

function Figure({ name, value, note, testid }: { name: string; value: string; note: string; testid: string }) {
  return (
    <div class="figure-box">
      <span class="figure-name">{name}</span>
      <strong data-testid={testid}>{value}</strong>
      <span class="muted">{note}</span>
    </div>
  );
}

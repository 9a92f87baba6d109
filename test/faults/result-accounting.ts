/**
 * The exactly-once accounting of a fault trial, as a pure function (no I/O) so its rules are
 * tested on their own: every result an edge produced is at the fleet exactly once, with the
 * same line, verdict and label, and the fleet holds nothing an edge did not produce. The one
 * loss allowed is a wiped disk's tail: results its edge stored after the last ack it recorded
 * die with the disk. They are counted and listed (`lostWithWipe`), never dropped from the check;
 * an acked result of a wiped store missing at the fleet is `lost` like any other.
 */

/** A result as both sides store it; `key` is `edge/store/seq`. */
export interface ResultRow {
  key: string;
  line: string;
  verdict: string;
  label: string;
}

/** A store whose disk was wiped: its rows and the last ack it had recorded, read after the kill. */
export interface WipedStore {
  edge: string;
  storeId: string;
  ackedSeq: number;
  rows: (ResultRow & { seq: number })[];
}

/** The outcome of the check, in counts. */
export interface ResultCounts {
  /** Results the edges stored, wiped stores included. */
  produced: number;
  /** Distinct results at the fleet. */
  atFleet: number;
  /** Produced and missing at the fleet, other than a wipe's unacked tail: must be 0. */
  lost: number;
  /** Rows at the fleet beyond the first for one (edge, store, seq): must be 0. */
  duplicated: number;
  /** At the fleet but produced by no edge: must be 0. */
  notProduced: number;
  /** Stored after the last ack its edge recorded, then lost with a wiped disk: allowed, reported. */
  lostWithWipe: number;
  /** The seqs of `lostWithWipe`, by `edge/store`. */
  lostWithWipeSeqs: Record<string, number[]>;
}

export interface Accounting {
  counts: ResultCounts;
  /** One line per violation; empty when the check holds. */
  problems: string[];
  /** The distinct results at the fleet, by key. */
  atFleet: Map<string, ResultRow>;
  /** Everything produced, by key. */
  produced: Map<string, ResultRow>;
}

/**
 * Compares what the edges produced (`live` stores now, `wiped` stores as they were at the wipe)
 * with the fleet's rows, and every verdict the line was answered (`answers`, by key) with what
 * was stored under its seq.
 */
export function accountResults(live: ResultRow[], wiped: WipedStore[], fleetRows: ResultRow[], answers: ReadonlyMap<string, string>): Accounting {
  const problems: string[] = [];
  const produced = new Map<string, ResultRow>();
  const unackedWiped = new Map<string, { store: string; seq: number }>();
  for (const w of wiped) {
    for (const r of w.rows) {
      produced.set(r.key, r);
      if (r.seq > w.ackedSeq) unackedWiped.set(r.key, { store: `${w.edge}/${w.storeId}`, seq: r.seq });
    }
  }
  for (const r of live) produced.set(r.key, r);

  const atFleet = new Map<string, ResultRow>();
  let duplicated = 0;
  const notProduced: string[] = [];
  for (const r of fleetRows) {
    if (atFleet.has(r.key)) duplicated++;
    else atFleet.set(r.key, r);
    const p = produced.get(r.key);
    if (!p) notProduced.push(r.key);
    else if (p.line !== r.line || p.verdict !== r.verdict || p.label !== r.label) {
      problems.push(`result ${r.key}: fleet has ${[r.line, r.verdict, r.label].join('/')}, edge produced ${[p.line, p.verdict, p.label].join('/')}`);
    }
  }
  const lost: string[] = [];
  const lostWithWipeSeqs: Record<string, number[]> = {};
  let lostWithWipe = 0;
  for (const key of produced.keys()) {
    if (atFleet.has(key)) continue;
    const w = unackedWiped.get(key);
    if (w) {
      (lostWithWipeSeqs[w.store] ??= []).push(w.seq);
      lostWithWipe++;
    } else lost.push(key);
  }
  for (const seqs of Object.values(lostWithWipeSeqs)) seqs.sort((a, b) => a - b);
  if (lost.length) problems.push(`${lost.length} produced result(s) missing at the fleet: ${lost.slice(0, 10).join(', ')}`);
  if (duplicated) problems.push(`${duplicated} result(s) twice at the fleet`);
  if (notProduced.length) problems.push(`${notProduced.length} result(s) at the fleet that no edge produced: ${notProduced.slice(0, 10).join(', ')}`);
  // "Answered" means "stored": every verdict the line got is there under its seq (kill -9 included).
  for (const [key, verdict] of answers) {
    const p = produced.get(key);
    if (p?.verdict !== verdict) problems.push(`answered ${key} ${verdict}, stored ${p ? p.verdict : 'nothing'}`);
  }
  return {
    counts: { produced: produced.size, atFleet: atFleet.size, lost: lost.length, duplicated, notProduced: notProduced.length, lostWithWipe, lostWithWipeSeqs },
    problems,
    atFleet,
    produced,
  };
}

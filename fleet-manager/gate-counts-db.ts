/**
 * The rollout gate counters in the fleet database (`edge_model_counts`, created and filled by
 * store-migrations.ts migrateToGateCounts): added to in the ingest transaction, read by the
 * rollout engine through FleetStore.candidateCounters. Synchronous (better-sqlite3).
 */
import type Database from 'better-sqlite3';
import { tallyEntries, type CandidateCounts, type GateMode, type GateTally } from './gate-counts.js';

export interface GateCountsDb {
  /** Adds a batch's tally to the edge's counters; call inside the transaction that inserted the rows. */
  add(edgeId: string, tally: GateTally): void;
  /** The edges' cumulative counts of `model` in `mode`; an edge without any is absent. */
  candidateCounters(edges: readonly string[], model: string, mode: GateMode): CandidateCounts[];
}

export function createGateCountsDb(db: Database.Database): GateCountsDb {
  const st = {
    add: db.prepare<[string, string, string, number, number, number, number, number, number]>(
      `INSERT INTO edge_model_counts (edge_id, model, mode, frames, defects, paired, agree, base_defects, errors)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (edge_id, model, mode) DO UPDATE SET
         frames = frames + excluded.frames,
         defects = defects + excluded.defects,
         paired = paired + excluded.paired,
         agree = agree + excluded.agree,
         base_defects = base_defects + excluded.base_defects,
         errors = errors + excluded.errors`,
    ),
    // The primary key (edge_id, model, mode) answers each edge of the list.
    read: db.prepare<{ edges: string; model: string; mode: string }, CandidateCounts>(
      `SELECT edge_id AS edgeId, frames, defects, paired, agree, base_defects AS baseDefects, errors
       FROM edge_model_counts
       WHERE edge_id IN (SELECT value FROM json_each(@edges)) AND model = @model AND mode = @mode
       ORDER BY edge_id`,
    ),
  };
  return {
    add(edgeId, tally) {
      for (const { model, mode, counts: c } of tallyEntries(tally)) {
        st.add.run(edgeId, model, mode, c.frames, c.defects, c.paired, c.agree, c.baseDefects, c.errors);
      }
    },
    candidateCounters(edges, model, mode) {
      if (edges.length === 0) return [];
      return st.read.all({ edges: JSON.stringify(edges), model, mode });
    },
  };
}

/**
 * The rollout engine: moves edges to a candidate version stage by stage, measures each stage
 * against its gates, promotes, pauses or rolls back, and remembers everything in the control
 * store so a restarted fleet manager resumes where it stopped. It ticks on a timer and soon after
 * edges report; every change of what an edge should run goes out through the desired-state
 * publisher. Semantics: docs/fleet-manager.md "Rollouts".
 *
 * This file assigns edges, counts results and commits; the decisions are the pure stage machine
 * (rollout-stage-machine.ts), the timing is rollout-scheduler.ts, who owns which edge is
 * rollout-membership.ts and a line's manual rollback is rollout-line-rollback.ts.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import type { EventMessage, TelemetryMessage } from '../protocol/messages.js';
import type { EdgeRecord, FleetStore } from './store.js';
import { minusTotals, zeroTotals, type CandidateTotals } from './gate-counts.js';
import type { ControlStore } from './control-store.js';
import type { DesiredPublisher } from './desired-state.js';
import type { InboundReport } from './ingest.js';
import type { GoldenSetStore } from './golden-set-store.js';
import { createRolloutMembership, type RolloutMembership } from './rollout-membership.js';
import { createRolloutScheduler } from './rollout-scheduler.js';
import { transition, type RolloutAction, type RolloutMachineEvent } from './rollout-stage-machine.js';
import { planLineRollback, type LineRollback, type RolloutChanges } from './rollout-line-rollback.js';
import {
  ACTIVE_STATUSES,
  candidateId,
  normalizeRolloutSpec,
  type CreateRolloutBody,
  type RolloutDoc,
  type RolloutTarget,
  type StageEdgeState,
  type StageMode,
  type StageSelect,
  type StageState,
} from './rollout-spec.js';
import { edgeProgress, evaluateStage, reportsCandidate, type EdgeObservation, type EdgeProgress } from './rollout-gates.js';

export type { RolloutAction } from './rollout-stage-machine.js';
export type { LineRollback, LineRollbackEdge } from './rollout-line-rollback.js';

export interface RolloutEngineOptions {
  control: ControlStore;
  fleet: FleetStore;
  publisher: DesiredPublisher;
  logger: Logger;
  now?: () => number;
  /** Evaluation period (default 1000 ms); reports from edges also trigger an evaluation. */
  tickMs?: number;
  /** Results per edge that make the live baseline defect rate (default 1000). */
  baselineFrames?: number;
  /** Who owns which edge, shared with the desired-state publisher (default: a new one). */
  membership?: RolloutMembership;
  /** Told the id of each rollout just saved (the console's live rollout stream). Cheap and synchronous. */
  onChange?: (rolloutId: string) => void;
  /** The edges' golden-set reports (gate goldenSet); absent: that gate stays pending. */
  goldenSets?: Pick<GoldenSetStore, 'latestFor'>;
}

export interface RolloutEngine {
  /** Loads the active rollouts, publishes every edge's desired state, starts ticking. */
  start(): Promise<void>;
  /** Stops ticking and waits for the running evaluation. Idempotent. */
  stop(): Promise<void>;
  /** `by`: who starts it (`user:alice`), kept in the rollout's record. */
  create(body: CreateRolloutBody, by?: string): Promise<RolloutDoc>;
  get(id: string): Promise<RolloutDoc | null>;
  list(): Promise<RolloutDoc[]>;
  /** `by`: who pulls the lever, appended to the rollout's actions. */
  act(id: string, action: RolloutAction, by?: string): Promise<RolloutDoc>;
  /** Every edge of the line back to its previous version (a pin swap). */
  rollbackLine(line: string): Promise<LineRollback>;
  /** Feeds a stored edge message in (ingest's onReport). */
  onReport(report: InboundReport): void;
  /** Evaluates every running rollout now (tests; the timer does this otherwise). */
  tick(): Promise<void>;
  /** The artifact (sha256) an active rollout runs in shadow on this edge. */
  shadowOf(edgeId: string): string | null;
  /** When the engine started (silence is counted from no earlier). */
  readonly startedAt: number;
}

const BASELINE_FRAMES = 1000;
/** Reports arrive in bursts; one evaluation shortly after a burst serves them all. */
const POKE_DELAY_MS = 25;

/** Creates the engine; nothing runs until start(). */
export function createRolloutEngine(opts: RolloutEngineOptions): RolloutEngine {
  const { control, fleet, publisher } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const tickMs = opts.tickMs ?? 1000;
  const baselineFrames = opts.baselineFrames ?? BASELINE_FRAMES;
  const membership = opts.membership ?? createRolloutMembership();
  /** Rollouts that own edges (running, awaiting promotion, paused), by id. */
  const { active, owner, shadowOf } = membership;
  /** Docs changed outside a tick (telemetry, events) that the next tick must save. */
  const dirty = new Set<string>();
  /** Last line seen per edge: a new edge or a moved one needs its desired state (re)computed. */
  const knownLines = new Map<string, string | null>();
  let startedAt = now();
  /** Set before the first full publish, so an edge appearing during it is not missed. */
  let publishing = false;
  const scheduler = createRolloutScheduler({
    tickMs,
    pokeDelayMs: POKE_DELAY_MS,
    evaluate: () => tickAll(),
    wanted: () => [...active.values()].some(measured),
    logger: log,
  });
  /** Everything that reads and writes rollouts runs one at a time. */
  const exclusive = scheduler.exclusive;

  function observe(e: EdgeRecord): EdgeObservation {
    return { lastSeen: e.lastSeen, online: e.online, active: e.state?.active ?? null, shadow: e.state?.shadow ?? null };
  }

  function emptyStage(): StageState {
    return { status: 'pending', startedAt: null, endedAt: null, measuringSince: null, attempt: 0, edges: {}, evaluation: null };
  }

  /** Opens a stage attempt: results stored from here on count, soak and silence start again. */
  async function openStage(doc: RolloutDoc, index: number): Promise<void> {
    const st = doc.stages[index]!;
    st.status = 'running';
    st.startedAt = now();
    st.endedAt = null;
    st.measuringSince = null;
    st.attempt += 1;
    st.evaluation = null;
    const live = doc.spec.stages[index]!.mode === 'live';
    for (const [id, se] of Object.entries(st.edges)) {
      Object.assign(se, zeroCounters(), { failed: null });
      delete se.snapshot;
      // The candidate's own results are excluded, so the history before it is still the base.
      if (live && !se.removed) Object.assign(se, baseCounters(await fleet.recentDefectRate(id, candidateId(doc), baselineFrames)));
    }
    doc.stageIndex = index;
    await snapshot(doc, Object.keys(st.edges));
  }

  /** The edges' cumulative counters of the candidate in the current stage's mode. */
  async function totalsOf(doc: RolloutDoc, ids: string[], mode: StageMode): Promise<Map<string, CandidateTotals>> {
    const rows = ids.length === 0 ? [] : await fleet.candidateCounters(ids, candidateId(doc), mode);
    return new Map(rows.map((r) => [r.edgeId, r]));
  }

  /**
   * Takes the snapshot of edges that have none (just joined, or the stage attempt just opened):
   * the candidate's results stored before now never count in this attempt, those after always
   * do, whatever ids or commit order they have.
   */
  async function snapshot(doc: RolloutDoc, ids: string[]): Promise<void> {
    const st = doc.stages[doc.stageIndex]!;
    const mode = doc.spec.stages[doc.stageIndex]!.mode;
    const missing = ids.filter((id) => !st.edges[id]!.removed && st.edges[id]!.snapshot === undefined);
    const totals = await totalsOf(doc, missing, mode);
    for (const id of missing) {
      const se = st.edges[id]!;
      se.snapshot = minusTotals(totals.get(id) ?? zeroTotals(), counted(se, mode));
    }
  }

  function targetIds(doc: RolloutDoc, edges: EdgeRecord[]): string[] {
    const t: RolloutTarget = doc.spec.target;
    let ids: string[];
    if (t.edges) ids = [...t.edges];
    else if (t.lines) ids = edges.filter((e) => e.line !== null && t.lines!.includes(e.line)).map((e) => e.id);
    else ids = edges.map((e) => e.id);
    // A fixed pseudo-random order per rollout: 10 % then 50 % then 100 % are nested sets.
    const key = (id: string) => createHash('sha256').update(`${doc.id}\0${id}`).digest('hex');
    return ids.map((id) => [key(id), id] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, id]) => id);
  }

  function selectIds(select: StageSelect, targets: string[], byId: Map<string, EdgeRecord>): string[] {
    if (select.edges) return select.edges.filter((id) => targets.includes(id));
    if (select.line !== undefined) return targets.filter((id) => byId.get(id)?.line === select.line);
    if (select.percent !== undefined) return targets.slice(0, Math.ceil((targets.length * select.percent) / 100));
    return targets;
  }

  /**
   * What the edge runs now, to return to on rollback: its pin, or null for the model in its own
   * config. Null rather than the registry's copy of that model, even when one exists: the edge
   * keeps its local model loaded as "previous", so going back to it is a pointer switch, while an
   * artifact would be a download.
   */
  async function previousOf(edgeId: string, e: EdgeRecord | undefined, candidateSha: string): Promise<{ sha: string | null; model: string | null }> {
    const pin = await control.getPin(edgeId);
    // Already on the candidate (an earlier, aborted rollout of it): what it ran before that.
    const sha = pin?.active === candidateSha ? pin.previous : (pin?.active ?? null);
    if (sha) {
      const v = await control.getVersionBySha(sha);
      return { sha, model: v ? `${v.name}@${v.version}` : null };
    }
    const ref = pin?.active === candidateSha ? null : e?.state?.active;
    return { sha: null, model: ref ? `${ref.name}@${ref.version}` : null };
  }

  type TickOutput = RolloutChanges;

  /** Assigns the current stage's edges that are not yet in it. */
  async function assign(doc: RolloutDoc, edges: EdgeRecord[], byId: Map<string, EdgeRecord>, out: TickOutput): Promise<void> {
    const index = doc.stageIndex;
    const stage = doc.spec.stages[index]!;
    const st = doc.stages[index]!;
    const ids = selectIds(stage.select, targetIds(doc, edges), byId);
    const joined: string[] = [];
    for (const id of ids) {
      if (st.edges[id]) continue;
      const other = owner(id);
      if (other && other !== doc) continue; // another rollout has it; this one leaves it alone
      if (doc.members[id]?.mode === 'removed') continue; // its line was rolled back by hand
      const t = now();
      const se: StageEdgeState = { assignedAt: t, convergedAt: null, removed: false, failed: null, ...zeroCounters() };
      let member = doc.members[id];
      if (!member) {
        const prev = await previousOf(id, byId.get(id), doc.sha256);
        member = { mode: stage.mode, stage: index, joinedAt: t, previous: prev.sha, previousModel: prev.model };
        doc.members[id] = member;
      }
      member.mode = stage.mode;
      member.stage = index;
      if (stage.mode === 'live') {
        Object.assign(se, baseCounters(await fleet.recentDefectRate(id, candidateId(doc), baselineFrames)));
        out.pins.push({ edgeId: id, active: doc.sha256, previous: member.previous, updatedAt: t });
      }
      st.edges[id] = se;
      joined.push(id);
      out.refresh.add(id);
      log.info({ rollout: doc.id, edgeId: id, stage: stage.name, mode: stage.mode }, 'edge assigned');
    }
    await snapshot(doc, joined);
  }

  /** Sets each edge's result counters to the candidate's totals now minus the edge's snapshot. */
  async function count(doc: RolloutDoc): Promise<void> {
    const st = doc.stages[doc.stageIndex]!;
    const mode = doc.spec.stages[doc.stageIndex]!.mode;
    // Rollouts saved by builds that counted result rows by id (a `watermark`, no snapshot) get
    // theirs here, on their first tick after the upgrade, as the totals now minus what they had
    // counted: their counters carry on unchanged, and only the candidate's results stored between
    // the old build's last tick and this one (about a tick's worth, plus a backlog ingested before
    // this tick) go uncounted: the gates then wait a little longer, never judge on wrong figures.
    // Their `startRow`/`watermark` fields stay in the stored document, unused.
    await snapshot(doc, Object.keys(st.edges));
    const ids = Object.keys(st.edges).filter((id) => !st.edges[id]!.removed);
    const totals = await totalsOf(doc, ids, mode);
    for (const id of ids) {
      const se = st.edges[id]!;
      const d = minusTotals(totals.get(id) ?? zeroTotals(), se.snapshot!);
      se.frames = d.frames;
      se.defects = d.defects;
      se.paired = d.paired;
      se.agree = d.agree;
      se.resultErrors = d.errors;
      if (mode === 'shadow') {
        se.baseFrames = d.paired;
        se.baseDefects = d.baseDefects;
      }
    }
  }

  function progressOf(doc: RolloutDoc, byId: Map<string, EdgeRecord>): [string, StageEdgeState, EdgeProgress][] {
    const st = doc.stages[doc.stageIndex]!;
    const ctx = { now: now(), silenceMs: doc.spec.silenceTimeoutSeconds * 1000, since: Math.max(st.startedAt ?? 0, startedAt) };
    return Object.entries(st.edges).map(([id, se]) => {
      const e = byId.get(id);
      return [id, se, edgeProgress(se, e ? observe(e) : undefined, ctx)];
    });
  }

  /**
   * One rollout, one step: assign, notice convergence, count, judge, act. A stage awaiting
   * promotion is still watched: it can still fail (a refusing edge, a gate), though not for an
   * edge going quiet while people take their time.
   */
  async function step(doc: RolloutDoc, edges: EdgeRecord[], byId: Map<string, EdgeRecord>, out: TickOutput): Promise<boolean> {
    if (!measured(doc)) return false;
    const awaiting = doc.status === 'awaiting-promotion';
    const stage = doc.spec.stages[doc.stageIndex]!;
    const st = doc.stages[doc.stageIndex]!;
    await assign(doc, edges, byId, out);
    for (const [id, se] of Object.entries(st.edges)) {
      const e = byId.get(id);
      const reports = reportsCandidate(e && observe(e), stage.mode, doc.model, doc.version);
      if (se.convergedAt === null && reports) {
        se.convergedAt = now();
        log.info({ rollout: doc.id, edgeId: id, stage: stage.name }, 'edge reports the candidate');
      } else if (se.convergedAt !== null && !reports) {
        // It stopped running the candidate (a restart still loading it, or a local revert):
        // pending again, with a fresh silence clock.
        se.convergedAt = null;
        se.waitingSince = now();
        log.warn({ rollout: doc.id, edgeId: id, stage: stage.name }, 'edge no longer reports the candidate');
      }
    }
    await count(doc);
    const edgesNow = progressOf(doc, byId);
    const inStage = edgesNow.filter(([, , p]) => p !== 'removed').length;
    const reporting = edgesNow.filter(([, , p]) => p === 'reporting').length;
    if (st.measuringSince === null && inStage > 0 && reporting >= Math.min(doc.spec.minSample, inStage)) st.measuringSince = now();
    const golden = stage.gates.goldenSet === true && opts.goldenSets ? await opts.goldenSets.latestFor(edgesNow.map(([id]) => id), candidateId(doc)) : undefined;
    const evaluation = evaluateStage(doc.spec, stage, st, edgesNow, now(), { ignoreSilence: awaiting, candidate: candidateId(doc), ...(golden && { golden }) });
    st.evaluation = evaluation;
    doc.updatedAt = now();
    if (evaluation.decision === 'fail') {
      log.warn({ rollout: doc.id, stage: stage.name, reason: evaluation.reason, policy: doc.spec.onFailure }, 'stage failed');
    }
    return apply(doc, { type: 'judged', decision: evaluation.decision, reason: evaluation.reason }, out);
  }

  /**
   * One event through the stage machine; its effects carried out. Resolves true when the next
   * stage opened and should be judged at once. An action the status forbids is OSP_ERR_CONFLICT.
   */
  async function apply(doc: RolloutDoc, event: RolloutMachineEvent, out: TickOutput): Promise<boolean> {
    const stage = doc.spec.stages[doc.stageIndex]!;
    const before = doc.stages[doc.stageIndex]!.status;
    const t = transition(
      { status: doc.status, reason: doc.reason, stageIndex: doc.stageIndex, stageStatus: before },
      { stageCount: doc.stages.length, stageName: stage.name, promotion: stage.promotion, onFailure: doc.spec.onFailure },
      event,
    );
    if (!t.ok) throw new OspreyError('OSP_ERR_CONFLICT', `rollout ${doc.id} is ${doc.status}; cannot ${t.cannot}`);
    doc.status = t.state.status;
    doc.reason = t.state.reason;
    for (const effect of t.effects) {
      switch (effect.type) {
        case 'stage': {
          const st = doc.stages[doc.stageIndex]!;
          st.status = effect.status;
          if (effect.ended) st.endedAt = now();
          const name = doc.spec.stages[doc.stageIndex]!.name;
          if (effect.status === 'passed' || effect.status === 'promoted') log.info({ rollout: doc.id, stage: name, how: effect.status }, 'stage ended');
          if (effect.status === 'awaiting-promotion' && before !== 'awaiting-promotion') log.info({ rollout: doc.id, stage: name }, 'stage awaits promotion');
          break;
        }
        case 'open-stage':
          await openStage(doc, effect.index);
          break;
        case 'roll-back':
          await rollBackMembers(doc, out);
          break;
        case 'release-shadows':
          for (const [id, m] of Object.entries(doc.members)) if (m.mode === 'shadow') out.refresh.add(id);
          break;
        case 'finished':
          doc.finishedAt = now();
          break;
      }
    }
    if (doc.status === 'completed') log.info({ rollout: doc.id, model: candidateId(doc) }, 'rollout completed');
    return t.again;
  }

  /** Every member still pinned to the candidate goes back to what it ran before the rollout. */
  async function rollBackMembers(doc: RolloutDoc, out: TickOutput): Promise<void> {
    const t = now();
    for (const [id, m] of Object.entries(doc.members)) {
      out.refresh.add(id);
      const pin = await control.getPin(id);
      if (pin?.active === doc.sha256) out.pins.push({ edgeId: id, active: m.previous, previous: doc.sha256, updatedAt: t });
    }
    doc.updatedAt = t;
    log.warn({ rollout: doc.id, model: candidateId(doc), edges: Object.keys(doc.members).length, reason: doc.reason }, 'rollout rolled back');
  }

  /** Saves docs (and pins) and publishes the desired states that changed. */
  async function commit(docs: RolloutDoc[], out: TickOutput): Promise<void> {
    const pins = [...out.pins];
    for (const doc of docs) {
      // Pins ride with the doc that changed them, in one transaction.
      const own = pins.filter((p) => doc.members[p.edgeId]);
      await control.saveRollout(doc, own);
      for (const p of own) pins.splice(pins.indexOf(p), 1);
      dirty.delete(doc.id);
      opts.onChange?.(doc.id);
      if (ACTIVE_STATUSES.includes(doc.status)) active.set(doc.id, doc);
      else active.delete(doc.id);
    }
    if (pins.length > 0) await control.setPins(pins);
    if (out.refresh.size > 0) await publisher.refresh([...out.refresh]);
  }

  async function edgesNow(): Promise<{ edges: EdgeRecord[]; byId: Map<string, EdgeRecord> }> {
    const edges = await fleet.listEdges();
    return { edges, byId: new Map(edges.map((e) => [e.id, e])) };
  }

  async function tickAll(): Promise<void> {
    const touched = [...active.values()].filter((d) => measured(d) || dirty.has(d.id));
    if (touched.length === 0) return;
    const { edges, byId } = await edgesNow();
    const out: TickOutput = { pins: [], refresh: new Set() };
    for (const doc of touched) {
      // A stage that passes at once (no gates) hands over to the next in the same tick.
      for (let i = 0; i <= doc.stages.length && (await step(doc, edges, byId, out)); i++);
    }
    await commit(touched, out);
  }

  function onTelemetry(edgeId: string, msg: TelemetryMessage): void {
    for (const doc of active.values()) {
      if (!measured(doc)) continue;
      const se = doc.stages[doc.stageIndex]!.edges[edgeId];
      const pm = msg.perModel[candidateId(doc)];
      if (!se || se.removed || !pm) continue;
      se.telFrames += pm.frames;
      se.telErrors += pm.errors ?? 0;
      if (pm.latencyP95Ms !== undefined && pm.frames > 0) {
        se.p95Sum += pm.latencyP95Ms * pm.frames;
        se.p95Frames += pm.frames;
      }
      dirty.add(doc.id);
    }
  }

  function onEvent(edgeId: string, ev: EventMessage): void {
    if (ev.kind !== 'model-failed' && ev.kind !== 'model-rolled-back') return;
    const data = ev.data ?? {};
    for (const doc of active.values()) {
      if (data.name !== doc.model || data.version !== doc.version) continue;
      const se = doc.stages[doc.stageIndex]?.edges[edgeId];
      if (!se || se.removed || se.failed) continue;
      const code = typeof data.code === 'string' ? data.code : typeof data.reason === 'string' ? data.reason : ev.kind;
      se.failed = `${ev.kind} ${code}: ${ev.message}`.slice(0, 300);
      dirty.add(doc.id);
      log.warn({ rollout: doc.id, edgeId, kind: ev.kind, reason: code }, 'edge refused the candidate');
    }
  }

  async function loadDoc(id: string): Promise<RolloutDoc> {
    const doc = active.get(id) ?? (await control.getRollout(id));
    if (!doc) throw new OspreyError('OSP_ERR_NOT_FOUND', `no rollout ${id}`);
    return doc;
  }

  return {
    get startedAt() {
      return startedAt;
    },
    shadowOf,
    async start() {
      startedAt = now();
      // A restart (leadership regained) takes the stored documents: another leader may have moved them on.
      active.clear();
      dirty.clear();
      knownLines.clear();
      for (const doc of await control.listRollouts({ active: true })) active.set(doc.id, doc);
      publishing = true;
      // The embedded broker keeps retained messages in memory only, and the URL may have changed.
      await publisher.refreshAll({ force: true });
      scheduler.start();
      log.info({ active: active.size, tickMs }, 'rollout engine started');
      await exclusive(tickAll);
    },
    async stop() {
      publishing = false;
      scheduler.stop();
      await exclusive(async () => {
        // Telemetry counted since the last tick is kept.
        const docs = [...active.values()].filter((d) => dirty.has(d.id));
        for (const doc of docs) await control.saveRollout(doc);
        dirty.clear();
      });
    },
    tick() {
      return exclusive(tickAll);
    },
    create(body, by) {
      return exclusive(async () => {
        const spec = normalizeRolloutSpec(body);
        if (typeof spec === 'string') throw new OspreyError('OSP_ERR_BAD_REQUEST', spec);
        const version = await control.getVersion(body.model, body.version);
        if (!version) throw new OspreyError('OSP_ERR_NOT_FOUND', `no model version ${body.model}@${body.version}`);
        const { edges, byId } = await edgesNow();
        for (const other of active.values()) {
          if (overlaps(spec.target, other.spec.target, byId)) {
            throw new OspreyError('OSP_ERR_CONFLICT', `rollout ${other.id} (${candidateId(other)}, ${other.status}) already targets some of these edges; finish, abort or roll it back first`);
          }
        }
        const t = now();
        const doc: RolloutDoc = {
          id: `ro-${randomUUID().slice(0, 8)}`,
          model: version.name,
          version: version.version,
          sha256: version.sha256,
          spec,
          status: 'running',
          reason: null,
          stageIndex: 0,
          createdAt: t,
          createdBy: by ?? null,
          actions: [],
          updatedAt: t,
          finishedAt: null,
          stages: spec.stages.map(emptyStage),
          members: {},
        };
        await openStage(doc, 0);
        active.set(doc.id, doc);
        log.info({ rollout: doc.id, model: candidateId(doc), stages: spec.stages.length }, 'rollout created');
        const out: TickOutput = { pins: [], refresh: new Set() };
        for (let i = 0; i <= doc.stages.length && (await step(doc, edges, byId, out)); i++);
        await commit([doc], out);
        return doc;
      });
    },
    async get(id) {
      return active.get(id) ?? control.getRollout(id);
    },
    async list() {
      const stored = await control.listRollouts();
      // In-memory docs carry counters not yet saved.
      return stored.map((d) => active.get(d.id) ?? d);
    },
    act(id, action, by) {
      return exclusive(async () => {
        const doc = await loadDoc(id);
        const out: TickOutput = { pins: [], refresh: new Set() };
        await apply(doc, { type: action }, out);
        doc.updatedAt = now();
        if (by !== undefined) doc.actions = [...(doc.actions ?? []), { action, by, at: doc.updatedAt }];
        log.info({ rollout: doc.id, action, status: doc.status, by }, 'rollout action');
        if (doc.status === 'running') {
          const { edges, byId } = await edgesNow();
          for (let i = 0; i <= doc.stages.length && (await step(doc, edges, byId, out)); i++);
        }
        await commit([doc], out);
        return doc;
      });
    },
    rollbackLine(line) {
      return exclusive(async () => {
        const { result, docs, changes } = await planLineRollback(line, { control, fleet, membership, now });
        await commit(docs, changes);
        log.info({ line, edges: result.edges.length, pausedRollouts: result.pausedRollouts }, 'line rolled back');
        return result;
      });
    },
    onReport(report) {
      switch (report.kind) {
        case 'telemetry':
          onTelemetry(report.edgeId, report.message);
          break;
        case 'events':
          onEvent(report.edgeId, report.message);
          break;
        case 'state': {
          const line = report.message.line ?? knownLines.get(report.edgeId) ?? null;
          if (publishing && (!knownLines.has(report.edgeId) || knownLines.get(report.edgeId) !== line)) {
            // A new edge gets its desired state at once; a moved one gets its new line's config.
            void publisher.refresh([report.edgeId]).catch((err: unknown) => log.error({ err, edgeId: report.edgeId }, 'desired state refresh failed'));
          }
          if (publishing) knownLines.set(report.edgeId, line);
          break;
        }
        case 'results':
          break;
      }
      scheduler.poke();
    },
  };
}

/** Rollouts whose current stage is being measured. */
function measured(doc: RolloutDoc): boolean {
  return doc.status === 'running' || doc.status === 'awaiting-promotion';
}

/** What an edge's result counters hold, in the terms of the gate counters (gate-counts.ts). */
function counted(se: StageEdgeState, mode: StageMode): CandidateTotals {
  return {
    frames: se.frames,
    defects: se.defects,
    paired: se.paired,
    agree: se.agree,
    // A live stage's base is the edge's history (baseCounters), not a counter.
    baseDefects: mode === 'shadow' ? se.baseDefects : 0,
    errors: se.resultErrors,
  };
}

function baseCounters(b: { frames: number; defects: number }) {
  return { baseFrames: b.frames, baseDefects: b.defects };
}

function zeroCounters() {
  return { frames: 0, paired: 0, agree: 0, defects: 0, baseFrames: 0, baseDefects: 0, resultErrors: 0, telFrames: 0, telErrors: 0, p95Sum: 0, p95Frames: 0 };
}

/** Whether two targets may share an edge (known edges decide between edge lists and lines). */
function overlaps(a: RolloutTarget, b: RolloutTarget, byId: Map<string, EdgeRecord>): boolean {
  if (a.all || b.all) return true;
  if (a.lines && b.lines) return a.lines.some((l) => b.lines!.includes(l));
  if (a.edges && b.edges) return a.edges.some((id) => b.edges!.includes(id));
  const [edges, lines] = a.edges ? [a.edges, b.lines!] : [b.edges!, a.lines!];
  return edges.some((id) => {
    const line = byId.get(id)?.line;
    return line !== undefined && line !== null && lines.includes(line);
  });
}

/**
 * Training jobs and backbones over HTTP (issue 15; docs/TRAINING.md "Training on the fleet"):
 * start a job from images already in the fleet (JSON) or an uploaded tar archive (options in the
 * query string), list and read jobs, their bounded logs, live progress as server-sent events,
 * cancel; upload, list and delete the ONNX backbones jobs train on.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError, isOspreyError, safeLine } from '../../protocol/errors.js';
import { check } from '../../protocol/validator.js';
import { errorResponses } from '../http-schemas.js';
import { describePrincipal } from '../auth/principal.js';
import { receiveFile, prepareUploadDir, type ReceivedFile } from '../upload-file.js';
import { createSseHub, type SseHubOptions } from './sse.js';
import type { Backbones } from '../backbones.js';
import type { BackboneRecord } from '../backbone-store.js';
import type { ControlStore } from '../control-store.js';
import type { FleetImageStore, ResultKey } from '../image-store.js';
import type { FleetStore } from '../store.js';
import { isTerminal, type TrainingRunner } from '../training-runner.js';
import { checkCounts, extractTrainingArchive, materialiseFleetImages, type FrameReview } from '../training-sources.js';
import type { TrainingJob, TrainingStore } from '../training-store.js';
import {
  BackboneParamsSchema,
  BackboneQuerySchema,
  BackbonesSchema,
  BackboneViewSchema,
  JobParamsSchema,
  ListQuerySchema,
  LogsQuerySchema,
  LogsSchema,
  TrainingArchiveQuerySchema,
  TrainingJobRequestSchema,
  TrainingJobsSchema,
  TrainingJobViewSchema,
  type TrainingArchiveQuery,
  type TrainingJobView,
} from '../training-schemas.js';

export interface TrainingLimits {
  /** Largest training archive upload (training.maxArchiveBytes). */
  maxArchiveBytes: number;
  /** Most images one job takes (training.maxImages). */
  maxImages: number;
  /** Most result rows a fleet source reads looking for kept frames (training.maxScannedResults). */
  maxScannedResults: number;
  /** Largest backbone upload (training.maxBackboneBytes). */
  maxBackboneBytes: number;
}

export interface TrainingRouteDeps extends SseHubOptions {
  jobs: TrainingStore;
  runner: TrainingRunner;
  backbones: Backbones;
  /** The default backbone's name (training.defaultBackbone, or the one registered at start); null: none. */
  defaultBackbone: () => Promise<string | null>;
  control: Pick<ControlStore, 'getVersion'>;
  results: Pick<FleetStore, 'listResults'>;
  images: Pick<FleetImageStore, 'get'>;
  /** Inspectors' reviews: a reviewed frame trains with its reviewed label (issue 16). */
  reviewOf?: (key: ResultKey) => Promise<FrameReview | null>;
  /** Where archives are received (beside the jobs' folders). */
  uploadDir: string;
  limits: TrainingLimits;
  now: () => number;
}

/**
 * A body this plugin's parsers received to disk. A class, checked with instanceof: a JSON body
 * shaped like `{ file: "/etc/…" }` must never be taken for a file the fleet received (it would be
 * read, moved and deleted).
 */
class Received {
  constructor(readonly upload: ReceivedFile) {}
}

const view = (j: TrainingJob): TrainingJobView => ({
  id: j.id,
  kind: j.kind,
  model: j.model,
  version: j.version ?? j.requestedVersion,
  backbone: j.backbone,
  options: j.options,
  source: j.source,
  state: j.state,
  phase: j.phase,
  progress: j.progress,
  counts: j.counts,
  error: j.error,
  createdBy: j.createdBy,
  createdAt: j.createdAt,
  startedAt: j.startedAt,
  finishedAt: j.finishedAt,
  resultVersion: j.resultVersion,
  resultSha256: j.resultSha256,
  modelCard: j.modelCard,
  pid: j.pid,
  droppedLogLines: j.droppedLogLines,
});

/** Registers the training and backbone routes. */
export const trainingRoutes: FastifyPluginAsync<TrainingRouteDeps> = async (app, deps) => {
  const { jobs, runner, backbones, limits } = deps;
  prepareUploadDir(deps.uploadDir);
  const backboneView = (b: BackboneRecord, def: string | null) => ({ ...b, default: b.name === def });

  const tooLarge = (req: FastifyRequest, limit: number, setting: string) => {
    const declared = Number(req.headers['content-length']);
    return declared > limit ? new OspreyError('OSP_ERR_TOO_LARGE', `upload of ${declared} bytes exceeds ${setting} (${limit} bytes)`) : null;
  };
  // Bodies go to disk as they arrive; only this plugin's routes see these parsers.
  app.addContentTypeParser(['application/x-tar', 'application/tar'], (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: Received) => void) => {
    const refused = tooLarge(req, limits.maxArchiveBytes, 'training.maxArchiveBytes');
    if (refused) return done(refused);
    receiveFile(payload, deps.uploadDir, limits.maxArchiveBytes, 'training.maxArchiveBytes').then((archive) => done(null, new Received(archive)), done);
  });
  app.addContentTypeParser('application/octet-stream', (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: Received) => void) => {
    const refused = tooLarge(req, limits.maxBackboneBytes, 'training.maxBackboneBytes');
    if (refused) return done(refused);
    receiveFile(payload, backbones.uploadDir, limits.maxBackboneBytes, 'training.maxBackboneBytes').then((file) => done(null, new Received(file)), done);
  });

  /** The job's common checks: a backbone that exists, a version not taken. */
  async function prepare(options: TrainingArchiveQuery): Promise<string> {
    const backbone = options.backbone ?? (await deps.defaultBackbone());
    if (!backbone) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'backbone: none given and the fleet has no default (upload one to /api/backbones or set training.defaultBackbone)');
    try {
      await backbones.resolve(backbone);
    } catch (err) {
      if (isOspreyError(err) && err.code === 'OSP_ERR_NOT_FOUND') throw new OspreyError('OSP_ERR_BAD_REQUEST', `backbone: unknown backbone ${backbone} (GET /api/backbones lists them)`);
      throw err;
    }
    if (options.kind === 'anomaly' && (options.valFraction !== undefined || options.goodLabel !== undefined)) {
      throw new OspreyError('OSP_ERR_BAD_REQUEST', 'valFraction and goodLabel are classify options');
    }
    if (options.kind === 'classify' && options.operatingPoint !== undefined) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'operatingPoint is an anomaly option');
    if (options.version && (await deps.control.getVersion(options.model, options.version))) {
      throw new OspreyError('OSP_ERR_CONFLICT', `${options.model}@${options.version} already exists; versions are immutable`);
    }
    return backbone;
  }

  app.post<{ Querystring: Record<string, string> }>(
    '/api/training-jobs',
    { config: { permission: 'training:write' }, schema: { response: { 201: TrainingJobViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const body = req.body as unknown;
      const archive = body instanceof Received ? body.upload : undefined;
      try {
        let options: TrainingArchiveQuery;
        let source: Record<string, unknown>;
        if (archive) {
          const q = check(TrainingArchiveQuerySchema, coerceQuery(req.query));
          if (!q.ok) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring${q.error}`);
          options = q.value;
          source = { type: 'archive', bytes: archive.bytes, sha256: archive.sha256 };
        } else {
          if (!body || typeof body !== 'object') {
            const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
            throw new OspreyError('OSP_ERR_CONTENT_TYPE', `send the job as application/json (images in the fleet) or application/x-tar (an archive, options in the query string), not ${type || 'nothing'}`);
          }
          const b = check(TrainingJobRequestSchema, body);
          if (!b.ok) throw new OspreyError('OSP_ERR_BAD_REQUEST', `body${b.error}`);
          const { source: s, ...rest } = b.value;
          options = rest;
          source = s;
        }
        const backbone = await prepare(options);
        const id = `tj-${randomBytes(8).toString('hex')}`;
        const workDir = runner.workDirFor(id);
        const data = join(workDir, 'data');
        let counts: Record<string, number>;
        try {
          await mkdir(data, { recursive: true });
          counts = archive
            ? await extractTrainingArchive(archive.file, options.kind, data, { maxImages: limits.maxImages })
            : await materialiseFleetImages({ results: deps.results, images: deps.images, ...(deps.reviewOf && { reviewOf: deps.reviewOf }) }, options.kind, source as never, data, limits);
          checkCounts(options.kind, counts, options.goodLabel);
        } catch (err) {
          await rm(workDir, { recursive: true, force: true });
          throw err;
        }
        const job: TrainingJob = {
          id,
          kind: options.kind,
          model: options.model,
          requestedVersion: options.version ?? null,
          version: options.version ?? null,
          backbone,
          options: {
            ...(options.operatingPoint !== undefined && { operatingPoint: options.operatingPoint }),
            ...(options.valFraction !== undefined && { valFraction: options.valFraction }),
            ...(options.goodLabel !== undefined && { goodLabel: options.goodLabel }),
          },
          source,
          state: 'queued',
          phase: 'queued',
          progress: 0,
          counts,
          error: null,
          createdBy: describePrincipal(req.principal),
          createdAt: deps.now(),
          startedAt: null,
          finishedAt: null,
          resultVersion: null,
          resultSha256: null,
          modelCard: null,
          workDir,
          pid: null,
          droppedLogLines: 0,
        };
        await runner.submit(job);
        req.auditNote = { action: 'training.start', target: `model:${job.model}`, after: { jobId: id, kind: job.kind, backbone, source, counts } };
        return reply.code(201).send(view(job));
      } finally {
        if (archive) await unlink(archive.file).catch(() => undefined);
      }
    },
  );

  app.get<{ Querystring: Static<typeof ListQuerySchema> }>(
    '/api/training-jobs',
    { config: { permission: 'fleet:read' }, schema: { querystring: ListQuerySchema, response: { 200: TrainingJobsSchema, ...errorResponses } } },
    async (req) => ({ jobs: (await jobs.listJobs(req.query.limit ?? 100)).map(view) }),
  );

  const getJob = async (id: string) => {
    const job = await jobs.getJob(id);
    if (!job) throw new OspreyError('OSP_ERR_NOT_FOUND', `no training job ${id}`);
    return job;
  };

  app.get<{ Params: Static<typeof JobParamsSchema> }>(
    '/api/training-jobs/:id',
    { config: { permission: 'fleet:read' }, schema: { params: JobParamsSchema, response: { 200: TrainingJobViewSchema, ...errorResponses } } },
    async (req) => view(await getJob(req.params.id)),
  );

  app.get<{ Params: Static<typeof JobParamsSchema>; Querystring: Static<typeof LogsQuerySchema> }>(
    '/api/training-jobs/:id/logs',
    { config: { permission: 'fleet:read' }, schema: { params: JobParamsSchema, querystring: LogsQuerySchema, response: { 200: LogsSchema, ...errorResponses } } },
    async (req) => {
      const job = await getJob(req.params.id);
      return { id: job.id, lines: await jobs.logs(job.id, req.query.limit ?? 500), droppedLogLines: job.droppedLogLines };
    },
  );

  app.post<{ Params: Static<typeof JobParamsSchema> }>(
    '/api/training-jobs/:id/cancel',
    { config: { permission: 'training:write' }, schema: { params: JobParamsSchema, response: { 200: TrainingJobViewSchema, ...errorResponses } } },
    async (req) => {
      const job = await runner.cancel(req.params.id);
      req.auditNote = { action: 'training.cancel', target: `training-job:${job.id}`, after: { state: job.state } };
      return view(job);
    },
  );

  // Server-sent events: the job now, then after each change, until it finishes (or the fleet closes).
  const hub = createSseHub(app, deps);
  app.get<{ Params: Static<typeof JobParamsSchema> }>(
    '/api/training-jobs/:id/events',
    { config: { permission: 'fleet:read' }, schema: { params: JobParamsSchema, response: { 200: { description: 'server-sent events: the job now, then after each change', content: { 'text/event-stream': { schema: Type.String() } } }, ...errorResponses } } },
    async (req, reply) => {
      const first = await getJob(req.params.id);
      const stream = hub.open(req, reply);
      let started = false;
      const send = (job: TrainingJob) => {
        stream.send('job', 'job', view(job));
        if (started && isTerminal(job)) stream.end();
      };
      stream.onEnd(runner.subscribe(first.id, send, () => stream.end()));
      // Read after subscribing: a change in between is sent, not lost.
      const now = await getJob(first.id);
      if (stream.ended) throw new OspreyError('OSP_ERR_SHUTTING_DOWN', 'the fleet is closing');
      stream.start([]);
      started = true;
      send(now);
    },
  );

  app.post<{ Querystring: Static<typeof BackboneQuerySchema> }>(
    '/api/backbones',
    { config: { permission: 'registry:write' }, schema: { querystring: BackboneQuerySchema, response: { 201: BackboneViewSchema, ...errorResponses } } },
    async (req, reply) => {
      if (!(req.body instanceof Received)) throw new OspreyError('OSP_ERR_CONTENT_TYPE', 'upload the backbone as application/octet-stream (the .onnx file)');
      const rec = await backbones.add(req.query.name, req.body.upload.file, describePrincipal(req.principal));
      req.auditNote = { action: 'backbone.upload', target: `backbone:${rec.name}`, after: { sha256: rec.sha256, size: rec.size } };
      return reply.code(201).send(backboneView(rec, await deps.defaultBackbone()));
    },
  );

  app.get('/api/backbones', { config: { permission: 'fleet:read' }, schema: { response: { 200: BackbonesSchema, ...errorResponses } } }, async () => {
    const def = await deps.defaultBackbone();
    return { backbones: (await backbones.list()).map((b) => backboneView(b, def)) };
  });

  app.delete<{ Params: Static<typeof BackboneParamsSchema> }>(
    '/api/backbones/:name',
    { config: { permission: 'registry:write' }, schema: { params: BackboneParamsSchema, response: { 200: BackboneViewSchema, ...errorResponses } } },
    async (req) => {
      const rec = await backbones.remove(req.params.name);
      if (!rec) throw new OspreyError('OSP_ERR_NOT_FOUND', `no backbone ${safeLine(req.params.name, 80)}`);
      req.auditNote = { action: 'backbone.delete', target: `backbone:${rec.name}`, before: { sha256: rec.sha256 } };
      return backboneView(rec, await deps.defaultBackbone());
    },
  );
};

/** Query-string values as the schema's types (valFraction is a number). */
function coerceQuery(q: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...q };
  if (typeof q.valFraction === 'string' && q.valFraction !== '' && Number.isFinite(Number(q.valFraction))) out.valFraction = Number(q.valFraction);
  return out;
}

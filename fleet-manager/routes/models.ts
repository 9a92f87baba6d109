/**
 * The model registry over HTTP: upload a version (a tar archive or the package files as
 * multipart; the publisher's signature.json travels as one more file of either), list models and versions, download artifacts by sha256 (with Range), and the fleet
 * public key edges verify signatures with.
 */
import { createReadStream } from 'node:fs';
import { rm, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { binaryResponse, errorResponses } from '../http-schemas.js';
import {
  ArtifactParamsSchema,
  ModelParamsSchema,
  ModelsSchema,
  ModelVersionsSchema,
  ModelVersionViewSchema,
  VersionParamsSchema,
  type ModelVersionView,
} from '../control-schemas.js';
import type { ModelVersionRecord } from '../control-store.js';
import type { PackageUpload } from '../registry.js';
import { receiveMultipart } from '../multipart-upload.js';
import { receiveFile } from '../upload-file.js';
import type { ControlDeps, RouteDeps } from './deps.js';
import { describePrincipal } from '../auth/principal.js';
import { readArchiveEntry } from '../../models/package-archive.js';
import { GOLDEN_FILE, MODEL_CARD_FILE } from '../../models/train/model-card.js';

/** Largest model card or golden.json the API reads out of an archive. */
const PACKED_JSON_MAX = 1024 * 1024;

const TAR_TYPES = ['application/x-tar', 'application/tar'];

/** A version as the API shows it: its artifact (download URL, signature, key id) and provenance. */
export function versionView(control: ControlDeps, rec: ModelVersionRecord): ModelVersionView {
  const a = control.registry.artifact(rec, control.baseUrl());
  return { ...a, keyId: rec.keyId, task: rec.manifest.task, createdAt: rec.createdAt, uploadedBy: rec.uploadedBy, trainedBy: rec.trainedBy ?? null, manifest: rec.manifest };
}

/** Registers the registry routes; needs deps.control. */
export const modelRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const control = deps.control!;
  const { store, registry } = control;
  const view = (rec: ModelVersionRecord): ModelVersionView => versionView(control, rec);

  // Both upload forms go to disk as they arrive (never whole in memory); only this plugin's routes see these parsers.
  const limit = control.maxPackageBytes;
  const setting = 'registry.maxPackageBytes';
  /** Refused from the content-length alone, before a byte is read. */
  const declaredTooLarge = (req: FastifyRequest) => {
    const declared = Number(req.headers['content-length']);
    return declared > limit ? new OspreyError('OSP_ERR_TOO_LARGE', `upload of ${declared} bytes exceeds ${setting} (${limit} bytes)`) : null;
  };
  app.addContentTypeParser(TAR_TYPES, (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: PackageUpload) => void) => {
    const refused = declaredTooLarge(req);
    if (refused) return done(refused);
    receiveFile(payload, registry.uploadDir, limit, setting).then((file) => done(null, { archiveFile: file }), done);
  });
  app.addContentTypeParser('multipart/form-data', (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: PackageUpload) => void) => {
    const refused = declaredTooLarge(req);
    if (refused) return done(refused);
    receiveMultipart(payload, req.headers, registry.uploadDir, limit, setting).then((files) => done(null, { files }), done);
  });

  app.post<{ Params: Static<typeof ModelParamsSchema> }>(
    '/api/models/:name/versions',
    { config: { permission: 'registry:write' }, schema: { params: ModelParamsSchema, response: { 200: ModelVersionViewSchema, 201: ModelVersionViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const upload = req.body as PackageUpload | undefined;
      if (!upload || typeof upload !== 'object' || !('archiveFile' in upload || 'files' in upload)) {
        const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        throw new OspreyError('OSP_ERR_CONTENT_TYPE', `upload the package as application/x-tar or multipart/form-data, not ${type || 'nothing'}`);
      }
      let added;
      try {
        added = await registry.addVersion(req.params.name, upload, { uploadedBy: describePrincipal(req.principal) });
      } finally {
        // Before the answer: a tar moved into the artifact store is gone already; whatever is left is no longer needed.
        if ('archiveFile' in upload) await unlink(upload.archiveFile.file).catch(() => undefined);
        else await rm(upload.files.dir, { recursive: true, force: true });
      }
      const { record } = added;
      req.auditNote = {
        action: 'model.upload',
        target: `model:${record.name}@${record.version}`,
        after: { sha256: record.sha256, size: record.size, created: added.created, uploadedBy: record.uploadedBy },
      };
      return reply.code(added.created ? 201 : 200).send(view(record));
    },
  );

  app.get('/api/models', { config: { permission: 'fleet:read' }, schema: { response: { 200: ModelsSchema, ...errorResponses } } }, async () => ({ models: await store.listModels() }));

  app.get<{ Params: Static<typeof ModelParamsSchema> }>(
    '/api/models/:name/versions',
    { config: { permission: 'fleet:read' }, schema: { params: ModelParamsSchema, response: { 200: ModelVersionsSchema, ...errorResponses } } },
    async (req) => {
      const versions = await store.listVersions(req.params.name);
      if (versions.length === 0) throw new OspreyError('OSP_ERR_NOT_FOUND', `no model ${req.params.name}`);
      return { name: req.params.name, versions: versions.map(view) };
    },
  );

  app.get<{ Params: Static<typeof VersionParamsSchema> }>(
    '/api/models/:name/versions/:version',
    { config: { permission: 'fleet:read' }, schema: { params: VersionParamsSchema, response: { 200: ModelVersionViewSchema, ...errorResponses } } },
    async (req) => {
      const rec = await store.getVersion(req.params.name, req.params.version);
      if (!rec) throw new OspreyError('OSP_ERR_NOT_FOUND', `no model version ${req.params.name}@${req.params.version}`);
      return view(rec);
    },
  );

  /** A JSON file packed in a version's archive (the model card, the golden set), bounded. */
  const packedJson = (file: string, what: string) => async (req: FastifyRequest<{ Params: Static<typeof VersionParamsSchema> }>) => {
    const rec = await store.getVersion(req.params.name, req.params.version);
    if (!rec) throw new OspreyError('OSP_ERR_NOT_FOUND', `no model version ${req.params.name}@${req.params.version}`);
    const bytes = await readArchiveEntry(await registry.localArtifact(rec.sha256), file, PACKED_JSON_MAX);
    if (!bytes) throw new OspreyError('OSP_ERR_NOT_FOUND', `${rec.name}@${rec.version} has no ${what} (${file}): it was not made by osprey train`);
    try {
      return JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${file} of ${rec.name}@${rec.version} is not JSON`);
    }
  };
  const AnyObject = Type.Object({}, { additionalProperties: true });
  app.get<{ Params: Static<typeof VersionParamsSchema> }>(
    '/api/models/:name/versions/:version/card',
    { config: { permission: 'fleet:read' }, schema: { params: VersionParamsSchema, response: { 200: { ...AnyObject, description: 'model-card.json of the version' }, ...errorResponses } } },
    packedJson(MODEL_CARD_FILE, 'model card'),
  );
  app.get<{ Params: Static<typeof VersionParamsSchema> }>(
    '/api/models/:name/versions/:version/golden',
    { config: { permission: 'fleet:read' }, schema: { params: VersionParamsSchema, response: { 200: { ...AnyObject, description: 'golden.json: the golden set and its expected answers' }, ...errorResponses } } },
    packedJson(GOLDEN_FILE, 'golden set'),
  );

  app.get<{ Params: Static<typeof ArtifactParamsSchema> }>(
    '/api/artifacts/:sha256',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        params: ArtifactParamsSchema,
        response: { 200: binaryResponse('the package (tar)', 'application/x-tar'), 206: binaryResponse('the Range asked for', 'application/x-tar'), 304: { description: 'If-None-Match matched', type: 'null' }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { sha256 } = req.params;
      const rec = await store.getVersionBySha(sha256);
      if (!rec) throw new OspreyError('OSP_ERR_NOT_FOUND', `no artifact ${sha256}`);
      // Fetched from the database first when another instance stored it (PostgreSQL storage).
      const file = await registry.localArtifact(sha256);
      const size = (await stat(file)).size; // missing file: a 500, logged — the registry lost bytes it promised
      const etag = `"${sha256}"`;
      reply
        .header('etag', etag)
        .header('accept-ranges', 'bytes')
        // Content-addressed: the bytes behind this URL never change.
        .header('cache-control', 'public, max-age=31536000, immutable')
        .type('application/x-tar');
      const inm = req.headers['if-none-match'];
      if (inm && (inm === '*' || inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))) return reply.code(304).send();
      // [RFC 9110 13.1.5] If-Range that does not match means "send it all".
      const ifRange = req.headers['if-range'];
      const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, size);
      if (range === 'unsatisfiable') return rangeNotSatisfiable(reply, size, String(req.headers.range));
      if (range) {
        reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
        return reply.send(createReadStream(file, { start: range.start, end: range.end }));
      }
      reply.header('content-length', size);
      return reply.send(createReadStream(file));
    },
  );

  app.get(
    '/api/fleet/public-key',
    { config: { permission: 'public' }, schema: { response: { 200: Type.String({ description: 'SPKI PEM of the fleet artifact-signing key' }), ...errorResponses } } },
    async (_req, reply) => reply.type('text/plain; charset=utf-8').send(registry.publicKeyPem),
  );
};

function rangeNotSatisfiable(reply: FastifyReply, size: number, header: string) {
  return reply
    .code(416)
    .header('content-range', `bytes */${size}`)
    .type('application/json; charset=utf-8')
    .send({ error: 'OSP_ERR_RANGE', message: `range ${header} is outside the artifact's ${size} bytes` });
}

/**
 * One `bytes=` range per RFC 9110 14.2: `a-b`, `a-`, or the suffix `-n`. Anything else (several
 * ranges, other units, bad syntax) is ignored and the whole artifact is sent, as the RFC allows.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  const last = m[2] === '' ? size - 1 : Number(m[2]);
  return { start, end: Math.min(last, size - 1) };
}

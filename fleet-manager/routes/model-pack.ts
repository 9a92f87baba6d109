/**
 * The pack wizard over HTTP: upload a bare ONNX file and get the fleet's proposed manifest with
 * the graph's inputs and outputs (what `osprey model inspect` prints), smoke-test the package
 * that a person's edited declarations make on a sample image (in a bounded child process), and
 * register it. A fleet-packed package is not publisher-signed: registering one needs the
 * publisher's signature.json of that very package, or registry.allowFleetPacked
 * (docs/SECURITY.md "Models the fleet packed").
 */
import { randomBytes } from 'node:crypto';
import { rm, unlink, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError, oneLine } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { ModelVersionViewSchema } from '../control-schemas.js';
import { describePrincipal } from '../auth/principal.js';
import { receiveFile, UPLOAD_SUFFIX, type ReceivedFile } from '../upload-file.js';
import { packageNameFromFile, proposeManifest } from '../../models/propose-manifest.js';
import { smokeTestInChild } from '../../models/smoke-test.js';
import { SIGNATURE_FILE } from '../../models/package-signature.js';
import { versionView } from './models.js';
import type { RouteDeps } from './deps.js';

/** Drafts kept at once (the oldest goes first) and how long one lives. */
const MAX_DRAFTS = 8;
const DRAFT_TTL_MS = 60 * 60 * 1000;
/** Largest sample image of a smoke test (decoded from base64). */
const MAX_SAMPLE_BYTES = 8 * 1024 * 1024;

const Num = Type.Number();
const Size = Type.Integer({ minimum: 1, maximum: 8192 });
const Label = Type.String({ minLength: 1, maxLength: 128 });
/** What a person may declare in the wizard: `osprey model pack`'s options, minus a plug-in (code). */
const DeclarationsSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' })),
    version: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$' })),
    task: Type.Optional(Type.Union([Type.Literal('classification'), Type.Literal('anomaly'), Type.Literal('detection')])),
    labels: Type.Optional(Type.Array(Label, { maxItems: 10_000 })),
    defectLabels: Type.Optional(Type.Array(Label, { maxItems: 10_000 })),
    size: Type.Optional(Type.Object({ width: Size, height: Size }, { additionalProperties: false })),
    resize: Type.Optional(Type.Union([Type.Literal('stretch'), Type.Literal('letterbox'), Type.Literal('center-crop')])),
    color: Type.Optional(Type.Union([Type.Literal('rgb'), Type.Literal('bgr'), Type.Literal('gray')])),
    layout: Type.Optional(Type.Union([Type.Literal('nchw'), Type.Literal('nhwc')])),
    scale: Type.Optional(Num),
    mean: Type.Optional(Type.Array(Num, { minItems: 1, maxItems: 4 })),
    std: Type.Optional(Type.Array(Num, { minItems: 1, maxItems: 4 })),
    threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    activation: Type.Optional(Type.Union([Type.Literal('softmax'), Type.Literal('sigmoid'), Type.Literal('none')])),
    normalization: Type.Optional(Type.Object({ min: Num, max: Num, threshold: Num }, { additionalProperties: false })),
    cropFraction: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    padValue: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    confidence: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    iou: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    maxDetections: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    classAgnosticNms: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, description: 'what `osprey model pack` takes as options; absent: what the model says' },
);
type Declarations = Static<typeof DeclarationsSchema>;

const DraftParamsSchema = Type.Object({ draft: Type.String({ pattern: '^d-[0-9a-f]{16}$' }) });
const ProposeQuerySchema = Type.Object({ file: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'the uploaded file name (proposes the package name)' })) });
const Tensor = Type.Object({ name: Type.String(), dtype: Type.String(), shape: Type.Array(Type.Union([Type.Number(), Type.String(), Type.Null()])) });
const Obj = Type.Object({}, { additionalProperties: true });
const ProposalSchema = Type.Object({
  draft: Type.String({ description: 'id of the uploaded ONNX file for the smoke test and registration (kept 1 h, at most 8 at once)' }),
  file: Type.String(),
  sha256: Type.String(),
  size: Type.Integer(),
  convention: Type.String(),
  opsets: Type.Array(Type.Object({ domain: Type.String(), version: Type.Number() })),
  producer: Type.String(),
  inputs: Type.Array(Tensor),
  outputs: Type.Array(Tensor),
  metadata: Type.Record(Type.String(), Type.String()),
  proposedManifest: Type.Union([Obj, Type.Null()]),
  proposalError: Type.Optional(Type.String()),
});
const SmokeBodySchema = Type.Object(
  { declarations: DeclarationsSchema, image: Type.String({ minLength: 1, maxLength: Math.ceil(MAX_SAMPLE_BYTES / 3) * 4, description: 'the sample image (JPEG, PNG, …), base64' }) },
  { additionalProperties: false },
);
const SmokeResultSchema = Type.Object({ manifest: Obj, inspection: Obj });
const RegisterBodySchema = Type.Object(
  { declarations: DeclarationsSchema, signature: Type.Optional({ ...Obj, description: `the publisher's ${SIGNATURE_FILE} of this very package (osprey model sign)` }) },
  { additionalProperties: false },
);

interface Draft {
  id: string;
  upload: ReceivedFile;
  fileName: string;
  createdAt: number;
}

/** Registers the pack wizard's routes; needs deps.control. */
export const modelPackRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const control = deps.control!;
  const { registry } = control;
  const drafts = new Map<string, Draft>();
  const limit = control.maxPackageBytes;
  const setting = 'registry.maxPackageBytes';

  const drop = async (d: Draft) => {
    drafts.delete(d.id);
    await unlink(d.upload.file).catch(() => undefined);
  };
  const expire = async () => {
    for (const d of [...drafts.values()]) if (deps.now() - d.createdAt > DRAFT_TTL_MS) await drop(d);
  };
  const draftOf = async (id: string) => {
    await expire();
    const d = drafts.get(id);
    if (!d) throw new OspreyError('OSP_ERR_NOT_FOUND', `no draft ${id}: upload the ONNX file again (drafts last an hour)`);
    return d;
  };
  app.addHook('onClose', async () => {
    for (const d of [...drafts.values()]) await drop(d);
  });

  app.addContentTypeParser('application/octet-stream', (req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: ReceivedFile) => void) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return done(new OspreyError('OSP_ERR_TOO_LARGE', `upload of ${declared} bytes exceeds ${setting} (${limit} bytes)`));
    receiveFile(payload, registry.uploadDir, limit, setting).then((file) => done(null, file), done);
  });

  app.post<{ Querystring: Static<typeof ProposeQuerySchema> }>(
    '/api/models/propose',
    { config: { permission: 'registry:write' }, schema: { querystring: ProposeQuerySchema, response: { 201: ProposalSchema, ...errorResponses } } },
    async (req, reply) => {
      const upload = req.body as ReceivedFile | undefined;
      if (!upload || typeof upload !== 'object' || !('sha256' in upload) || !upload.file?.endsWith(UPLOAD_SUFFIX)) {
        throw new OspreyError('OSP_ERR_CONTENT_TYPE', 'upload the ONNX file as application/octet-stream');
      }
      const fileName = req.query.file ?? 'model.onnx';
      let desc;
      try {
        // Authoring code (onnx-proto) is loaded on first use, never at fleet start (daemon-imports test).
        const { inspectOnnxFile } = await import('../../models/onnx-inspect.js');
        desc = await inspectOnnxFile(upload.file);
      } catch (err) {
        await unlink(upload.file).catch(() => undefined);
        throw new OspreyError('OSP_ERR_MODEL_LOAD', `${fileName}: not an ONNX model (${oneLine(err)})`, { cause: err });
      }
      await expire();
      while (drafts.size >= MAX_DRAFTS) await drop(drafts.values().next().value!);
      const id = `d-${randomBytes(8).toString('hex')}`;
      drafts.set(id, { id, upload, fileName, createdAt: deps.now() });
      let proposedManifest: Record<string, unknown> | null = null;
      let proposalError: string | undefined;
      try {
        proposedManifest = proposeManifest(desc, { name: packageNameFromFile(fileName) }) as unknown as Record<string, unknown>;
      } catch (err) {
        proposalError = oneLine(err);
      }
      req.auditNote = { action: 'model.propose', target: `draft:${id}`, after: { file: fileName, sha256: upload.sha256, size: upload.bytes } };
      return reply.code(201).send({
        draft: id,
        file: fileName,
        sha256: upload.sha256,
        size: upload.bytes,
        convention: desc.convention,
        opsets: desc.opsets,
        producer: desc.producer,
        inputs: desc.inputs,
        outputs: desc.outputs,
        metadata: desc.metadata,
        proposedManifest,
        ...(proposalError !== undefined && { proposalError }),
      });
    },
  );

  /** Packs the draft with these declarations into a fresh folder; the caller removes it. */
  const pack = async (d: Draft, declarations: Declarations) => {
    const dir = join(registry.uploadDir, `pack-${randomBytes(6).toString('hex')}${UPLOAD_SUFFIX}`);
    try {
      const { packModel } = await import('../../models/pack.js');
      const manifest = await packModel(d.upload.file, { ...declarations, name: declarations.name ?? packageNameFromFile(d.fileName), out: dir });
      return { dir, manifest };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  };

  app.post<{ Params: Static<typeof DraftParamsSchema>; Body: Static<typeof SmokeBodySchema> }>(
    '/api/models/propose/:draft/smoke-test',
    {
      config: { permission: 'registry:write' },
      bodyLimit: Math.ceil(MAX_SAMPLE_BYTES / 3) * 4 + 64 * 1024,
      schema: { params: DraftParamsSchema, body: SmokeBodySchema, response: { 200: SmokeResultSchema, ...errorResponses } },
    },
    async (req) => {
      const d = await draftOf(req.params.draft);
      const image = Buffer.from(req.body.image, 'base64');
      if (image.length === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'image: not base64 of an image');
      const { dir, manifest } = await pack(d, req.body.declarations);
      try {
        const sample = join(dir, '..', `${d.id}-${randomBytes(4).toString('hex')}.sample${UPLOAD_SUFFIX}`);
        await writeFile(sample, image);
        try {
          const inspection = await smokeTestInChild(dir, sample, { ...control.check, what: d.fileName });
          return { manifest: manifest as unknown as Record<string, unknown>, inspection: inspection as unknown as Record<string, unknown> };
        } finally {
          await unlink(sample).catch(() => undefined);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  app.post<{ Params: Static<typeof DraftParamsSchema>; Body: Static<typeof RegisterBodySchema> }>(
    '/api/models/propose/:draft/register',
    { config: { permission: 'registry:write' }, schema: { params: DraftParamsSchema, body: RegisterBodySchema, response: { 201: ModelVersionViewSchema, 200: ModelVersionViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const d = await draftOf(req.params.draft);
      const { dir, manifest } = await pack(d, req.body.declarations);
      let added;
      try {
        if (req.body.signature) await writeFile(join(dir, SIGNATURE_FILE), JSON.stringify(req.body.signature));
        added = await registry.addPackedVersion(manifest.name, dir, { user: describePrincipal(req.principal), source: d.upload.sha256.slice(0, 16) });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      await drop(d);
      const { record } = added;
      req.auditNote = {
        action: 'model.pack',
        target: `model:${record.name}@${record.version}`,
        after: { sha256: record.sha256, onnxSha256: d.upload.sha256, keyId: record.keyId, created: added.created, trainedBy: record.trainedBy ?? null },
      };
      return reply.code(added.created ? 201 : 200).send(versionView(control, record));
    },
  );
};

/**
 * The edge agent's configuration file: a JSON object validated against a TypeBox schema with the
 * protocol's one ajv instance. Defaults live in the schema (`default`), so the schema is the
 * documentation of every knob.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ErrorObject } from 'ajv';
import { OspreyError } from '../protocol/errors.js';
import { ThresholdsSchema, type Thresholds } from '../protocol/messages.js';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import { validatorFor } from '../protocol/validator.js';

const strict = { additionalProperties: false } as const;
const Int = (opts: object) => Type.Integer({ minimum: 0, ...opts });
const Path = (description: string) => Type.String({ minLength: 1, maxLength: 4096, description });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** JSON Schema of the edge config file. */
export const EdgeConfigFileSchema = Type.Object(
  {
    edgeId: Type.String({ pattern: EDGE_ID_PATTERN, description: 'unique edge id; also an MQTT topic level' }),
    line: Type.String({ minLength: 1, maxLength: 64 }),
    cameras: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      minItems: 1,
      maxItems: 64,
      uniqueItems: true,
      default: ['cam1'],
      description: 'camera names; frames name one of them, the first is the default',
    }),
    dataDir: Path('where results.db lives (relative paths: against this file)'),
    inputDir: Type.Optional(Path('hot folder watched for image files')),
    hotFolder: Type.Object(
      {
        settleMs: Int({ maximum: 600_000, default: 250, description: 'a file is taken once its size is unchanged this long' }),
        rescanMs: Int({ minimum: 20, maximum: 600_000, default: 2000, description: 'periodic rescan, for filesystems where fs.watch misses events' }),
        inFlight: Int({ minimum: 1, maximum: 1024, default: 4, description: 'hot-folder files in the queue at once (leaves room for HTTP)' }),
      },
      { ...strict, default: {} },
    ),
    http: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8480, description: '0 picks a free port' }),
        bodyLimitBytes: Int({ minimum: 1024, maximum: 1 << 30, default: 32 * 1024 * 1024 }),
      },
      { ...strict, default: {} },
    ),
    fleet: Type.Optional(
      Type.Object(
        {
          mqttUrl: Type.String({ pattern: '^(mqtt|mqtts|tcp|tls|ssl|ws|wss)://[^\\s]+$' }),
        },
        { ...strict, description: 'absent: the edge inspects and stores, and syncs nothing' },
      ),
    ),
    model: Type.Object({ dir: Path('model package directory') }, strict),
    thresholds: Type.Optional(ThresholdsSchema),
    queue: Type.Object(
      {
        concurrency: Int({ minimum: 1, maximum: 64, default: 2, description: 'frames inspected at once' }),
        maxDepth: Int({ minimum: 1, maximum: 100_000, default: 64, description: 'frames queued or running before 503' }),
        maxBytes: Int({ minimum: 1, default: 256 * 1024 * 1024, description: 'encoded bytes queued before 503' }),
      },
      { ...strict, default: {} },
    ),
    sync: Type.Object(
      {
        batchSize: Int({ minimum: 1, maximum: 10_000, default: 500 }),
        window: Int({ minimum: 1, maximum: 64, default: 2, description: 'batches in flight before waiting for an ack' }),
        intervalMs: Int({ minimum: 10, maximum: 3_600_000, default: 2000, description: 'fallback tick of the sync loop' }),
        ackTimeoutMs: Int({ minimum: 50, maximum: 3_600_000, default: 10_000, description: 'resend when no ack came' }),
      },
      { ...strict, default: {} },
    ),
    telemetry: Type.Object(
      { intervalMs: Int({ minimum: 50, maximum: 3_600_000, default: 10_000 }) },
      { ...strict, default: {} },
    ),
    maxPixels: Int({ minimum: 1, default: 50_000_000, description: 'images with more pixels are refused before decoding' }),
    logLevel: Type.Optional(
      // An enum rather than a union of literals: ajv then reports one clear error, not one per literal.
      Type.Unsafe<LogLevel>({ type: 'string', enum: [...LOG_LEVELS], description: 'pino level for `osprey edge start`' }),
    ),
  },
  { $id: 'osprey.v1.edgeConfigFile', ...strict },
);
export type EdgeConfigFile = Static<typeof EdgeConfigFileSchema>;

/** A validated config with every default filled in and every path absolute. */
export interface EdgeConfig {
  edgeId: string;
  line: string;
  cameras: string[];
  dataDir: string;
  inputDir?: string;
  hotFolder: { settleMs: number; rescanMs: number; inFlight: number };
  http: { host: string; port: number; bodyLimitBytes: number };
  fleet?: { mqttUrl: string };
  model: { dir: string };
  thresholds?: Thresholds;
  queue: { concurrency: number; maxDepth: number; maxBytes: number };
  sync: { batchSize: number; window: number; intervalMs: number; ackTimeoutMs: number };
  telemetry: { intervalMs: number };
  maxPixels: number;
  logLevel?: LogLevel;
}

/** `/http/port` → `http.port`, `/cameras/0` → `cameras[0]`. */
function fieldName(err: ErrorObject): string {
  const parts = err.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = err.params as { missingProperty?: string; additionalProperty?: string };
  if (err.keyword === 'required' && params.missingProperty) parts.push(params.missingProperty);
  if (err.keyword === 'additionalProperties' && params.additionalProperty) parts.push(params.additionalProperty);
  let name = '';
  for (const p of parts) name += /^\d+$/.test(p) ? `[${p}]` : name ? `.${p}` : p;
  return name || '(root)';
}

function describe(err: ErrorObject): string {
  if (err.keyword === 'required') return 'is required';
  if (err.keyword === 'additionalProperties') return 'is not a known field';
  return err.message ?? err.keyword;
}

/**
 * Validates a config object (as parsed from JSON), fills defaults and resolves relative paths
 * against `baseDir`. Throws OspreyError OSP_ERR_CONFIG with a one-line message naming the first
 * bad field and the source, e.g. `config http.port: must be <= 65535 (/etc/osprey/edge.json)`.
 */
export function parseEdgeConfig(value: unknown, source?: string, baseDir: string = process.cwd()): EdgeConfig {
  const where = source ? ` (${source})` : '';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OspreyError('OSP_ERR_CONFIG', `config: must be a JSON object${where}`);
  }
  // Defaults first (they only fill what is absent), then one validation over the whole result.
  const filled = Value.Default(EdgeConfigFileSchema, structuredClone(value)) as unknown;
  const validate = validatorFor(EdgeConfigFileSchema);
  if (!validate(filled)) {
    const errors = validate.errors ?? [];
    // Required/unknown-field errors are the most specific; ajv lists them with the rest.
    const first = errors[0]!;
    const more = errors.length > 1 ? ` (+${errors.length - 1} more)` : '';
    throw new OspreyError('OSP_ERR_CONFIG', `config ${fieldName(first)}: ${describe(first)}${where}${more}`);
  }
  const file = filled as EdgeConfigFile;
  const abs = (p: string) => path.resolve(baseDir, p);
  const config: EdgeConfig = {
    ...(file as Omit<EdgeConfig, 'dataDir' | 'inputDir' | 'model'>),
    dataDir: abs(file.dataDir),
    model: { dir: abs(file.model.dir) },
  };
  if (file.inputDir !== undefined) config.inputDir = abs(file.inputDir);
  else delete config.inputDir;
  return config;
}

/**
 * Reads and validates a JSON config file. Relative paths in it are resolved against the file's
 * directory. Every problem is an OspreyError OSP_ERR_CONFIG with a one-line message.
 */
export async function loadEdgeConfig(file: string): Promise<EdgeConfig> {
  const full = path.resolve(file);
  let text: string;
  try {
    text = await readFile(full, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OspreyError('OSP_ERR_CONFIG', `config: cannot read ${full} (${code})`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `config: not valid JSON: ${(err as Error).message} (${full})`, {
      cause: err,
    });
  }
  return parseEdgeConfig(value, full, path.dirname(full));
}

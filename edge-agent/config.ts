/**
 * The edge agent's configuration file: a JSON object validated against a TypeBox schema with the
 * protocol's one ajv instance. Defaults live in the schema (`default`), so the schema is the
 * documentation of every knob.
 */
import { type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ErrorObject } from 'ajv';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { ThresholdsSchema, type Thresholds } from '../protocol/messages.js';
import { cronScheduleError } from '../protocol/golden-schedule.js';
import { GoldenSetSettingsSchema, MonitorSettingsSchema, type GoldenSetSettings, type MonitorSettings } from '../protocol/monitoring.js';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import { MAX_JSON_DEPTH, nestedDeeperThan, validatorFor } from '../protocol/validator.js';
import { FLEET_KEY_ID } from '../models/artifact-signature.js';
import { checkTrustedKeyEntries, loadTrustedKeys, parseEd25519PublicKey, TrustedKeyListSchema, type TrustedKeyEntry } from '../models/trusted-keys.js';

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
        maxInFlightBytes: Int({ minimum: 1024, default: 128 * 1024 * 1024, description: 'request body bytes held at once by POST /inspect (reading or inspecting); beyond it 503' }),
      },
      { ...strict, default: {} },
    ),
    metrics: Type.Optional(
      Type.Object(
        {
          host: Type.String({ minLength: 1, description: 'interface of the metrics listener; another machine\'s Prometheus needs a non-loopback one' }),
          port: Type.Integer({ minimum: 0, maximum: 65535, description: 'port of the metrics listener (0 picks a free one)' }),
          tokenFile: Type.Optional(Path('file holding the bearer token scrapers must send (Authorization: Bearer); absent: no credential asked')),
        },
        { ...strict, description: 'a second listener serving only GET /metrics, for a Prometheus on another machine (docs/SECURITY.md); absent: /metrics only on the loopback API' },
      ),
    ),
    fleet: Type.Optional(
      Type.Object(
        {
          mqttUrl: Type.String({ pattern: '^(mqtt|mqtts|tcp|tls|ssl|ws|wss)://[^\\s]+$' }),
          publicKey: Type.Optional(
            Type.String({ minLength: 1, maxLength: 16_384, description: "the fleet's Ed25519 public key (PEM); model artifacts must be signed by it" }),
          ),
          publicKeyFile: Type.Optional(Path('file holding the fleet public key (PEM); alternative to publicKey')),
          credentialFile: Type.Optional(
            Path("file holding this edge's credential (0600), written by `osprey edge enroll`: MQTT password and HTTP bearer towards the fleet"),
          ),
          httpUrl: Type.Optional(
            Type.String({ pattern: '^https?://[^\\s]+$', description: 'fleet HTTP base, for artifact URLs in desired state that are relative' }),
          ),
          trustedKeys: Type.Optional(
            TrustedKeyListSchema('publisher keys model packages may be signed by, with ids: [{ id, publicKey | publicKeyFile }]; publicKey/publicKeyFile above is the entry "fleet"'),
          ),
          artifactOrigins: Type.Optional(
            Type.Array(Type.String({ pattern: '^https?://[^\\s/]+/?$', description: 'scheme://host[:port]' }), {
              maxItems: 16,
              description: 'origins artifacts may be downloaded from besides the origin of httpUrl; any other URL is refused unfetched',
            }),
          ),
          maxPacketBytes: Type.Optional(
            Int({ minimum: 65_536, maximum: 268_435_455, description: 'largest MQTT packet sent or accepted (default 4 MiB); at most the broker\'s limit' }),
          ),
          caFile: Type.Optional(Path("PEM CA the fleet's certificate must be signed by (mqtts:// and https:// only); default: the system's roots")),
        },
        { ...strict, description: 'absent: the edge inspects and stores, and syncs nothing' },
      ),
    ),
    model: Type.Object(
      {
        dir: Path('model package directory: the initial model, and the one used while desired state names none'),
        cacheVersions: Int({ minimum: 1, maximum: 100, default: 3, description: 'downloaded versions kept on disk (active, previous and shadow always kept)' }),
        probationFrames: Int({ minimum: 1, maximum: 100_000, default: 20, description: 'first frames of a new active or shadow model watched for errors' }),
        probationErrors: Int({ minimum: 1, maximum: 100_000, default: 3, description: 'errors among the probation frames that revert (active) or drop (shadow) a model' }),
        threads: Int({
          maximum: 256,
          default: 0,
          description: 'onnxruntime intra-op threads per model; 0: one per core (several agents or other software on one PC: lower it)',
        }),
        shadowWaitMs: Int({ maximum: 600_000, default: 500, description: 'longest the verdict waits for the shadow candidate after the active model answered' }),
        downloadTimeoutMs: Int({ minimum: 100, maximum: 86_400_000, default: 600_000, description: 'one download attempt; stalls end sooner (30 s without bytes)' }),
        retryBaseMs: Int({ minimum: 1, maximum: 3_600_000, default: 500, description: 'first retry delay of a failed download (doubles, with jitter)' }),
        retryMaxMs: Int({ minimum: 1, maximum: 3_600_000, default: 60_000, description: 'longest delay between download attempts' }),
        allowPlugins: Type.Boolean({
          default: false,
          description: "run packages' post-processing plug-ins (code); false: a package with a plug-in is refused and the current model kept",
        }),
      },
      strict,
    ),
    thresholds: Type.Optional(ThresholdsSchema),
    // The edge's own monitoring and golden-set settings (issue 17): in force from the start, and
    // while the fleet's effective config has none (an edge without a fleet, or one not yet reached).
    monitoring: Type.Optional(MonitorSettingsSchema),
    goldenSet: Type.Optional(GoldenSetSettingsSchema),
    queue: Type.Object(
      {
        // 4, not 2: decoding runs on libuv's 4 threads while inference holds the JS thread, so a light
        // model stays decode-bound with 2 in flight (bench/edge-pipeline.ts); heavy models lose nothing.
        concurrency: Int({ minimum: 1, maximum: 64, default: 4, description: 'frames inspected at once' }),
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
        maxResultsPerSecond: Int({
          maximum: 10_000_000,
          default: 20_000,
          description: 'cap on results sent per second, so a catch-up after an outage leaves the CPU to inspection; 0: no cap',
        }),
      },
      { ...strict, default: {} },
    ),
    retention: Type.Object(
      {
        ackedMaxAgeMs: Int({ default: 7 * 24 * 3_600_000, description: 'acknowledged results older than this are deleted' }),
        maxBytes: Int({ minimum: 1 << 20, default: 1 << 30, description: 'result store quota in bytes; unacknowledged results are never deleted to stay under it' }),
        maxRows: Int({ default: 0, description: 'result store quota in rows; 0: bytes only' }),
        intervalMs: Int({ minimum: 10, maximum: 3_600_000, default: 10_000, description: 'how often acknowledged results are pruned' }),
      },
      { ...strict, default: {}, description: 'edge result retention and quota (docs/edge-agent.md, Retention)' },
    ),
    images: Type.Object(
      {
        maxBytes: Int({ default: 1 << 30, description: 'image store quota; the oldest images go first (uploaded ones before the rest); 0: keep no images' }),
        upload: Type.Boolean({ default: true, description: 'upload kept images to the fleet (needs fleet.httpUrl)' }),
        sampling: Type.Object(
          {
            keepDefectImages: Type.Boolean({ default: true }),
            uncertainBand: Type.Number({ minimum: 0, maximum: 1, default: 0.05, description: 'keep frames whose score is within this of the threshold' }),
            keepGoodEvery: Int({ default: 0, description: 'keep every Nth good frame; 0: none' }),
          },
          { ...strict, default: {}, description: 'local policy until the fleet pushes one in desired state' },
        ),
        retryBaseMs: Int({ minimum: 1, maximum: 3_600_000, default: 1000, description: 'first retry delay of a failed upload (doubles)' }),
        retryMaxMs: Int({ minimum: 1, maximum: 3_600_000, default: 60_000 }),
        timeoutMs: Int({ minimum: 100, maximum: 3_600_000, default: 30_000, description: 'one upload attempt' }),
      },
      { ...strict, default: {} },
    ),
    disk: Type.Object(
      {
        minFreeBytes: Int({ default: 256 << 20, description: 'free space the data disk keeps: below it kept images are deleted (uploaded first) and model downloads are refused' }),
        resumeFreeBytes: Int({ default: 512 << 20, description: 'images are deleted until this much is free, and the disk-low alarm clears above it; at least minFreeBytes' }),
        checkIntervalMs: Int({ minimum: 10, maximum: 3_600_000, default: 5000, description: 'how often free space is read (statfs)' }),
        alarmHoldMs: Int({ maximum: 86_400_000, default: 60_000, description: 'a storage alarm clears only after its cause has been gone this long (no flapping)' }),
      },
      { ...strict, default: {}, description: 'free space on the data disk (docs/edge-agent.md, Full or broken disk)' },
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

export interface RetentionConfig {
  ackedMaxAgeMs: number;
  maxBytes: number;
  maxRows: number;
  intervalMs: number;
}

export interface ImagesConfig {
  maxBytes: number;
  upload: boolean;
  sampling: { keepDefectImages: boolean; uncertainBand: number; keepGoodEvery: number };
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
}

export interface DiskConfig {
  minFreeBytes: number;
  resumeFreeBytes: number;
  checkIntervalMs: number;
  alarmHoldMs: number;
}

/** A validated config with every default filled in and every path absolute. */
export interface EdgeConfig {
  edgeId: string;
  line: string;
  cameras: string[];
  dataDir: string;
  inputDir?: string;
  hotFolder: { settleMs: number; rescanMs: number; inFlight: number };
  http: { host: string; port: number; bodyLimitBytes: number; maxInFlightBytes?: number };
  /** The metrics-only listener (absent: none); tokenFile absolute. */
  metrics?: { host: string; port: number; tokenFile?: string };
  fleet?: {
    mqttUrl: string;
    publicKey?: string;
    publicKeyFile?: string;
    httpUrl?: string;
    maxPacketBytes?: number;
    /** File names absolute. */
    trustedKeys?: TrustedKeyEntry[];
    artifactOrigins?: string[];
    caFile?: string;
    credentialFile?: string;
  };
  /** `dir` is required; the other knobs default in the schema (optional here for hand-built configs). */
  model: {
    dir: string;
    /** onnxruntime intra-op threads per model; 0 or absent: one per core. */
    threads?: number;
    cacheVersions?: number;
    probationFrames?: number;
    probationErrors?: number;
    shadowWaitMs?: number;
    downloadTimeoutMs?: number;
    retryBaseMs?: number;
    retryMaxMs?: number;
    /** Import packages' plug-ins (default false). */
    allowPlugins?: boolean;
  };
  thresholds?: Thresholds;
  /** Image health and score drift settings used while the fleet's config has none. */
  monitoring?: MonitorSettings;
  /** Golden-set self-test settings used while the fleet's config has none. */
  goldenSet?: GoldenSetSettings;
  queue: { concurrency: number; maxDepth: number; maxBytes: number };
  sync: { batchSize: number; window: number; intervalMs: number; ackTimeoutMs: number; maxResultsPerSecond?: number };
  /** Optional for hand-built configs; the schema fills it in (issue 5). */
  retention?: RetentionConfig;
  images?: ImagesConfig;
  disk?: DiskConfig;
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
  // structuredClone and Value.Default recurse: a value nested thousands deep would overflow the stack.
  if (nestedDeeperThan(value)) throw new OspreyError('OSP_ERR_CONFIG', `config: nested deeper than ${MAX_JSON_DEPTH} levels${where}`);
  // Defaults first (they only fill what is absent), then one validation over the whole result.
  const filled = Value.Default(EdgeConfigFileSchema, structuredClone(value)) as unknown;
  const validate = validatorFor(EdgeConfigFileSchema);
  if (!validate(filled)) {
    const errors = validate.errors ?? [];
    // Required/unknown-field errors are the most specific; ajv lists them with the rest.
    const first = errors[0]!;
    const more = errors.length > 1 ? ` (+${errors.length - 1} more)` : '';
    // The field name may be any key of the input: escaped and cut to one line.
    throw new OspreyError('OSP_ERR_CONFIG', `config ${safeLine(`${fieldName(first)}: ${describe(first)}`)}${where}${more}`);
  }
  const file = filled as EdgeConfigFile;
  const abs = (p: string) => path.resolve(baseDir, p);
  const config: EdgeConfig = {
    ...(file as Omit<EdgeConfig, 'dataDir' | 'inputDir' | 'model'>),
    dataDir: abs(file.dataDir),
    model: { ...file.model, dir: abs(file.model.dir) },
  };
  if (file.metrics?.tokenFile !== undefined) config.metrics = { ...file.metrics, tokenFile: abs(file.metrics.tokenFile) };
  if (file.inputDir !== undefined) config.inputDir = abs(file.inputDir);
  else delete config.inputDir;
  if (file.disk.resumeFreeBytes < file.disk.minFreeBytes) {
    throw new OspreyError('OSP_ERR_CONFIG', `config disk.resumeFreeBytes: must be >= disk.minFreeBytes (${file.disk.minFreeBytes})${where}`);
  }
  if (file.http.maxInFlightBytes < file.http.bodyLimitBytes) {
    throw new OspreyError('OSP_ERR_CONFIG', `config http.maxInFlightBytes: must be >= http.bodyLimitBytes (${file.http.bodyLimitBytes})${where}`);
  }
  const scheduleError = file.goldenSet?.schedule !== undefined ? cronScheduleError(file.goldenSet.schedule) : null;
  if (scheduleError) throw new OspreyError('OSP_ERR_CONFIG', `config goldenSet.schedule: ${safeLine(scheduleError)}${where}`);
  if (file.fleet) {
    const fleet = { ...file.fleet };
    if (fleet.publicKey !== undefined && fleet.publicKeyFile !== undefined) {
      throw new OspreyError('OSP_ERR_CONFIG', `config fleet: set publicKey or publicKeyFile, not both${where}`);
    }
    if (fleet.publicKeyFile !== undefined) fleet.publicKeyFile = abs(fleet.publicKeyFile);
    if (fleet.credentialFile !== undefined) fleet.credentialFile = abs(fleet.credentialFile);
    if (fleet.publicKey !== undefined) checkPublicKey(fleet.publicKey, `config fleet.publicKey${where}`);
    if (fleet.caFile !== undefined) {
      fleet.caFile = abs(fleet.caFile);
      // A CA with a plain URL would be silently unused: the edge would talk to anyone.
      if (!/^(mqtts|tls|ssl|wss):/.test(fleet.mqttUrl)) throw new OspreyError('OSP_ERR_CONFIG', `config fleet.mqttUrl: must be mqtts:// when fleet.caFile is set${where}`);
      if (fleet.httpUrl !== undefined && !fleet.httpUrl.startsWith('https:')) {
        throw new OspreyError('OSP_ERR_CONFIG', `config fleet.httpUrl: must be https:// when fleet.caFile is set${where}`);
      }
    }
    if (fleet.trustedKeys !== undefined) {
      fleet.trustedKeys = checkTrustedKeyEntries(fleet.trustedKeys, 'fleet.trustedKeys', baseDir, where);
      if ((fleet.publicKey !== undefined || fleet.publicKeyFile !== undefined) && fleet.trustedKeys.some((k) => k.id === FLEET_KEY_ID)) {
        throw new OspreyError('OSP_ERR_CONFIG', `config fleet.trustedKeys: the id "${FLEET_KEY_ID}" is fleet.publicKey's; give this key another id${where}`);
      }
    }
    config.fleet = fleet;
  }
  return config;
}

/** Throws OSP_ERR_CONFIG unless `pem` is an Ed25519 public key. */
function checkPublicKey(pem: string, what: string): void {
  parseEd25519PublicKey(pem, what);
}

/**
 * Every key artifacts may be signed by, by id: the fleet's key (fleet.publicKey or
 * fleet.publicKeyFile) as "fleet", and each of fleet.trustedKeys. Empty: every artifact is
 * refused. A missing, unreadable or wrong key is OSP_ERR_CONFIG.
 */
export async function readTrustedKeys(config: Pick<EdgeConfig, 'fleet'>): Promise<Map<string, KeyObject>> {
  const keys = await loadTrustedKeys(config.fleet?.trustedKeys ?? [], 'fleet.trustedKeys');
  const fleetKey = await readFleetPublicKey(config);
  if (fleetKey !== undefined) keys.set(FLEET_KEY_ID, parseEd25519PublicKey(fleetKey, 'config fleet.publicKey'));
  return keys;
}

/** Origins (scheme://host:port) artifacts may be downloaded from: fleet.httpUrl's and fleet.artifactOrigins. */
export function artifactOrigins(config: Pick<EdgeConfig, 'fleet'>): string[] {
  const urls = [...(config.fleet?.httpUrl ? [config.fleet.httpUrl] : []), ...(config.fleet?.artifactOrigins ?? [])];
  return [...new Set(urls.map((u) => new URL(u).origin))];
}

/**
 * The fleet's public key (PEM) from `fleet.publicKey` or the file named by `fleet.publicKeyFile`;
 * undefined when neither is set (the edge then refuses every artifact the fleet names).
 * A missing, unreadable or wrong key is OSP_ERR_CONFIG.
 */
export async function readFleetPublicKey(config: Pick<EdgeConfig, 'fleet'>): Promise<string | undefined> {
  const fleet = config.fleet;
  if (!fleet) return undefined;
  if (fleet.publicKey !== undefined) return fleet.publicKey;
  if (fleet.publicKeyFile === undefined) return undefined;
  let pem: string;
  try {
    pem = await readFile(fleet.publicKeyFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OspreyError('OSP_ERR_CONFIG', `config fleet.publicKeyFile: cannot read ${fleet.publicKeyFile} (${code})`, { cause: err });
  }
  checkPublicKey(pem, `config fleet.publicKeyFile (${fleet.publicKeyFile})`);
  return pem;
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
    throw new OspreyError('OSP_ERR_CONFIG', `config: not valid JSON: ${safeLine((err as Error).message, 200)} (${full})`, {
      cause: err,
    });
  }
  return parseEdgeConfig(value, full, path.dirname(full));
}

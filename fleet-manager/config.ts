/**
 * Fleet manager configuration: a JSON file (or the same object from code) checked against a
 * schema by protocol's one ajv instance, then completed with defaults.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { check } from '../protocol/validator.js';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { DEFAULT_MAX_PACKET_BYTES } from '../protocol/mqtt-packet-limit.js';
import { DEFAULT_SHIFTS, shiftProblem, type Shift } from './line-series.js';
import { checkTrustedKeyEntries, TrustedKeyListSchema, type TrustedKeyEntry } from '../models/trusted-keys.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const strict = { additionalProperties: false } as const;
const Host = Type.String({ minLength: 1, maxLength: 255 });
const Port = Type.Integer({ minimum: 0, maximum: 65535, description: '0 picks a free port' });

/** What a fleet config file may contain; every field is optional. */
export const FleetConfigSchema = Type.Object(
  {
    dataDir: Type.Optional(Type.String({ minLength: 1, description: 'SQLite file and artifacts; relative to the config file' })),
    http: Type.Optional(Type.Object({ host: Type.Optional(Host), port: Type.Optional(Port) }, strict)),
    mqtt: Type.Optional(
      Type.Object(
        {
          host: Type.Optional(Host),
          port: Type.Optional(Port),
          maxPacketBytes: Type.Optional(
            Type.Integer({ minimum: 65_536, maximum: 268_435_455, description: 'largest MQTT packet the embedded broker and the fleet client accept' }),
          ),
          maxRetainedMessages: Type.Optional(Type.Integer({ minimum: 1, description: 'retained topics the embedded broker keeps at most' })),
          maxRetainedBytes: Type.Optional(Type.Integer({ minimum: 65_536, description: 'retained payload bytes the embedded broker keeps at most' })),
        },
        { ...strict, description: 'the embedded broker (maxPacketBytes also caps what the fleet client accepts from an external one)' },
      ),
    ),
    brokerUrl: Type.Optional(
      Type.String({ pattern: '^(mqtts?|tcp|tls|wss?)://[^\\s]+$', description: 'external broker; no embedded one is started' }),
    ),
    tls: Type.Optional(
      Type.Object(
        {
          certFile: Type.String({ minLength: 1, description: 'PEM server certificate (chain) of the HTTP and MQTT listeners; relative to the config file' }),
          keyFile: Type.String({ minLength: 1, description: 'PEM private key of certFile; relative to the config file' }),
          caFile: Type.Optional(Type.String({ minLength: 1, description: "PEM CA the fleet's own MQTT client trusts (a private CA); default: the system's" })),
        },
        { ...strict, description: 'with it, only HTTPS and MQTTS listen (docs/SECURITY.md ("Transport: TLS"))' },
      ),
    ),
    // Null allowed so a resolved config can be passed back in as is.
    brokerPasswordFile: Type.Optional(
      Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
        description: 'with brokerUrl: file holding the password of the fleet user osprey-fleet (default dataDir/keys/broker-fleet.secret, written by osprey fleet broker-config)',
      }),
    ),
    // An enum rather than a union of literals: ajv then reports one error, not one per literal.
    logLevel: Type.Optional(Type.Unsafe<LogLevel>({ type: 'string', enum: [...LOG_LEVELS] })),
    // Null allowed so a resolved config can be passed back in as is.
    publicUrl: Type.Optional(
      Type.Union([
        Type.String({ pattern: '^https?://[^\\s/]+(/[^\\s]*)?$', description: 'base URL edges use to download artifacts' }),
        Type.Null(),
      ], { description: 'default: the HTTP listen address (set it when edges reach the fleet by another name)' }),
    ),
    registry: Type.Optional(
      Type.Object(
        {
          maxPackageBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'largest accepted model package upload' })),
          maxBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'quota of the artifact store (dataDir/artifacts) in bytes' })),
          requirePublisherSignature: Type.Optional(
            Type.Boolean({ description: 'refuse uploads without a signature.json by a key in publisherKeys (default true); false: unsigned uploads are signed with the fleet key' }),
          ),
          allowFleetPacked: Type.Optional(
            Type.Boolean({ description: 'sign packages the fleet packs from an uploaded ONNX file (console pack wizard) with the fleet key when no publisher signature comes with them (default false)' }),
          ),
          publisherKeys: Type.Optional(TrustedKeyListSchema('publisher public keys uploads may be signed by: [{ id, publicKey | publicKeyFile }]')),
          checkTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000, description: 'longest the upload check may run the model (child process)' })),
          checkMaxRssBytes: Type.Optional(Type.Integer({ minimum: 64 * 1024 * 1024, description: 'most memory the upload check may use running the model' })),
        },
        strict,
      ),
    ),
    images: Type.Optional(
      Type.Object(
        {
          maxImageBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'largest accepted result image upload' })),
          maxBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'quota of the image store (dataDir/images) in bytes' })),
          maxInFlightBytes: Type.Optional(
            Type.Integer({ minimum: 1024, description: 'image upload bytes held at once across all requests (at least maxImageBytes); beyond it 503' }),
          ),
        },
        strict,
      ),
    ),
    instances: Type.Optional(
      Type.Object(
        {
          shareGroup: Type.Optional(
            Type.String({ pattern: '^[^/+#\\s]+$', maxLength: 64, description: 'MQTT 5 shared-subscription group of ingest on an external broker with PostgreSQL storage (default osprey-fleet)' }),
          ),
          leaderRetryMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, description: 'how often a follower tries to become leader and the leader checks its lock session (default 2000)' })),
          advertiseUrl: Type.Optional(
            Type.Union([
              Type.String({ pattern: '^https?://[^\\s/?#]+/?$', description: 'http(s)://host:port other fleet instances reach this one at (followers forward leader writes to it)' }),
              Type.Null(),
            ]),
          ),
        },
        { ...strict, description: 'several fleet instances on one PostgreSQL database (docs/deploy.md)' },
      ),
    ),
    rollouts: Type.Optional(
      Type.Object(
        { tickMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000, description: 'how often rollout gates are evaluated' })) },
        strict,
      ),
    ),
    auth: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(
            Type.Boolean({ description: 'false: no credential is asked for anywhere, and the fleet listens on loopback only (benchmarks, a developer machine)' }),
          ),
          sessionTtlMs: Type.Optional(
            Type.Integer({ minimum: 60_000, maximum: 30 * 86_400_000, description: 'how long a sign-in session lasts' }),
          ),
        },
        strict,
      ),
    ),
    training: Type.Optional(
      Type.Object(
        {
          defaultBackbone: Type.Optional(
            Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
              description: 'backbone jobs use when they name none: a backbone name in the fleet, or a path to an ONNX file or package folder (registered at start; relative to the config file)',
            }),
          ),
          maxArchiveBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'largest training archive upload' })),
          maxImages: Type.Optional(Type.Integer({ minimum: 3, maximum: 1_000_000, description: 'most images one training job takes' })),
          maxScannedResults: Type.Optional(Type.Integer({ minimum: 100, description: 'most result rows a job from fleet images reads looking for kept frames' })),
          maxBackboneBytes: Type.Optional(Type.Integer({ minimum: 1024, description: 'largest backbone upload' })),
          timeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 86_400_000, description: 'longest a training job may run' })),
          maxRssBytes: Type.Optional(Type.Integer({ minimum: 64 * 1024 * 1024, description: 'most memory the trainer process may use' })),
        },
        { ...strict, description: 'training jobs on the fleet (docs/TRAINING.md "Training on the fleet")' },
      ),
    ),
    shifts: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 32 }),
            start: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'local start time HH:MM (the fleet manager\'s time zone)' }),
          },
          strict,
        ),
        { minItems: 1, maxItems: 12, description: 'the shift calendar of the line page (default Early 06:00, Late 14:00, Night 22:00); each shift ends where the next begins' },
      ),
    ),
    convergence: Type.Optional(
      Type.Object(
        {
          graceMs: Type.Optional(
            Type.Integer({ minimum: 100, maximum: 86_400_000, description: 'how long an edge may differ from its desired state before it is republished and alerted' }),
          ),
        },
        strict,
      ),
    ),
    alerts: Type.Optional(
      Type.Object(
        {
          offlineAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 7 * 86_400_000, description: 'an edge offline this long raises edge-offline' })),
          backlogWindowMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 86_400_000, description: 'window over which a growing backlog (telemetry pendingResults) is judged' })),
          backlogMinGrowth: Type.Optional(Type.Integer({ minimum: 1, description: 'growth of pendingResults over the window that raises backlog-growing' })),
          mismatchAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 7 * 86_400_000, description: 'an edge not running its desired state this long raises desired-state-mismatch' })),
          checkMs: Type.Optional(Type.Integer({ minimum: 50, maximum: 600_000, description: 'how often offline edges and convergence are judged' })),
          maxAlerts: Type.Optional(Type.Integer({ minimum: 100, maximum: 10_000_000, description: 'resolved alerts kept (oldest deleted first)' })),
        },
        { ...strict, description: 'alert rules (docs/monitoring.md "Alerts and notifications")' },
      ),
    ),
    webhooks: Type.Optional(
      Type.Object(
        {
          timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000, description: 'longest one delivery attempt may take' })),
          retryBaseMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 3_600_000, description: 'first retry delay, doubled per failed attempt (with jitter)' })),
          retryMaxMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400_000, description: 'longest retry delay' })),
          maxAgeMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 30 * 86_400_000, description: 'a notification not delivered after this long is given up' })),
          maxOutbox: Type.Optional(Type.Integer({ minimum: 100, maximum: 10_000_000, description: 'deliveries kept in the outbox (finished ones deleted first)' })),
        },
        { ...strict, description: 'webhook notifications of alerts' },
      ),
    ),
    storage: Type.Optional(
      Type.Object(
        {
          url: Type.Optional(
            Type.String({ pattern: '^postgres(ql)?://[^\\s]+$', maxLength: 2048, description: 'a postgres:// or postgresql:// URL: the stores on PostgreSQL; absent: SQLite in dataDir (fleet.db)' }),
          ),
        },
        { ...strict, description: 'where the fleet stores its data (docs/storage.md)' },
      ),
    ),
  },
  { $id: 'osprey.fleetConfig', ...strict },
);
export type FleetConfigInput = Static<typeof FleetConfigSchema>;

/** A complete configuration: every default filled in, dataDir absolute. */
export interface FleetConfig {
  dataDir: string;
  http: { host: string; port: number };
  mqtt: { host: string; port: number; maxPacketBytes: number; maxRetainedMessages: number; maxRetainedBytes: number };
  brokerUrl: string | null;
  /** TLS of both listeners, paths absolute; null: plain HTTP and MQTT. */
  tls: FleetTlsFiles | null;
  /** With brokerUrl: the fleet's broker password file (absolute); null: dataDir/keys/broker-fleet.secret if it exists. */
  brokerPasswordFile: string | null;
  logLevel: LogLevel;
  /** Base URL of artifact downloads in desired states; null: derived from the HTTP listen address. */
  publicUrl: string | null;
  registry: {
    maxPackageBytes: number;
    maxBytes: number;
    requirePublisherSignature: boolean;
    /** Fleet-packed (pack wizard) packages without a publisher signature are signed with the fleet key. */
    allowFleetPacked: boolean;
    /** File names absolute. */
    publisherKeys: TrustedKeyEntry[];
    checkTimeoutMs: number;
    checkMaxRssBytes: number;
  };
  images: { maxImageBytes: number; maxBytes: number; maxInFlightBytes: number };
  instances: { shareGroup: string; leaderRetryMs: number; /** null: derived from the HTTP listen address (fleet-manager/leader-forward.ts). */ advertiseUrl: string | null };
  rollouts: { tickMs: number };
  convergence: { graceMs: number };
  alerts: { offlineAfterMs: number; backlogWindowMs: number; backlogMinGrowth: number; mismatchAfterMs: number; checkMs: number; maxAlerts: number };
  webhooks: { timeoutMs: number; retryBaseMs: number; retryMaxMs: number; maxAgeMs: number; maxOutbox: number };
  /** `url` (PostgreSQL) absent: SQLite in dataDir. */
  storage: { url?: string };
  /** The shift calendar, in start order (docs/CONFIG.md). */
  shifts: Shift[];
  auth: { enabled: boolean; sessionTtlMs: number };
  training: {
    /** A backbone name, or an absolute path; null: the SqueezeNet under $OSPREY_DATA when no backbone exists. */
    defaultBackbone: string | null;
    maxArchiveBytes: number;
    maxImages: number;
    maxScannedResults: number;
    maxBackboneBytes: number;
    timeoutMs: number;
    maxRssBytes: number;
  };
}

/** The `tls` section with absolute paths. */
export interface FleetTlsFiles {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

export const FLEET_DEFAULTS = {
  dataDir: 'data',
  // Edges on the plant network must reach both ports, hence every interface by default.
  http: { host: '0.0.0.0', port: 8080 },
  // 4 MiB: an edge splits its result batches to fit (edge config fleet.maxPacketBytes, same default).
  mqtt: { host: '0.0.0.0', port: 1883, maxPacketBytes: DEFAULT_MAX_PACKET_BYTES, maxRetainedMessages: 100_000, maxRetainedBytes: 256 * 1024 * 1024 },
  logLevel: 'info',
  // Secure by default: only packages signed by a publisher key the fleet was given are accepted.
  registry: { maxPackageBytes: 512 * 1024 * 1024, maxBytes: 20 * 1024 ** 3, requirePublisherSignature: true, allowFleetPacked: false, checkTimeoutMs: 60_000, checkMaxRssBytes: 4 * 1024 ** 3 },
  images: { maxImageBytes: 64 * 1024 * 1024, maxBytes: 100 * 1024 ** 3, maxInFlightBytes: 256 * 1024 * 1024 },
  instances: { shareGroup: 'osprey-fleet', leaderRetryMs: 2000, advertiseUrl: null },
  rollouts: { tickMs: 1000 },
  convergence: { graceMs: 60_000 },
  alerts: { offlineAfterMs: 5 * 60_000, backlogWindowMs: 10 * 60_000, backlogMinGrowth: 100, mismatchAfterMs: 10 * 60_000, checkMs: 5000, maxAlerts: 10_000 },
  webhooks: { timeoutMs: 10_000, retryBaseMs: 5000, retryMaxMs: 15 * 60_000, maxAgeMs: 24 * 3_600_000, maxOutbox: 10_000 },
  // A working day: people sign in once per shift.
  auth: { enabled: true, sessionTtlMs: 12 * 3_600_000 },
  training: {
    maxArchiveBytes: 2 * 1024 ** 3,
    maxImages: 20_000,
    maxScannedResults: 1_000_000,
    maxBackboneBytes: 512 * 1024 * 1024,
    timeoutMs: 30 * 60_000,
    maxRssBytes: 4 * 1024 ** 3,
  },
} as const;

/**
 * Validates a config object and fills in defaults; relative dataDir resolves against baseDir.
 * Throws OspreyError OSP_ERR_CONFIG naming the offending field.
 */
export function resolveFleetConfig(input: unknown, baseDir = process.cwd(), source = 'fleet config'): FleetConfig {
  // `tls: null` is how a resolved config says "no TLS": accepted so one can be resolved again.
  if (input !== null && typeof input === 'object' && !Array.isArray(input) && (input as { tls?: unknown }).tls === null) {
    const { tls: _none, ...rest } = input as Record<string, unknown>;
    input = rest;
  }
  const checked = check(FleetConfigSchema, input);
  if (!checked.ok) throw new OspreyError('OSP_ERR_CONFIG', `${source}: ${checked.error}`);
  const c = checked.value;
  const maxImageBytes = c.images?.maxImageBytes ?? FLEET_DEFAULTS.images.maxImageBytes;
  // One image must fit; the default grows with a larger maxImageBytes.
  const maxInFlightBytes = c.images?.maxInFlightBytes ?? Math.max(FLEET_DEFAULTS.images.maxInFlightBytes, maxImageBytes);
  if (maxInFlightBytes < maxImageBytes) {
    throw new OspreyError('OSP_ERR_CONFIG', `${source}: images.maxInFlightBytes (${maxInFlightBytes}) must be at least images.maxImageBytes (${maxImageBytes})`);
  }
  return {
    dataDir: resolve(baseDir, c.dataDir ?? FLEET_DEFAULTS.dataDir),
    http: { ...FLEET_DEFAULTS.http, ...c.http },
    mqtt: { ...FLEET_DEFAULTS.mqtt, ...c.mqtt },
    brokerUrl: c.brokerUrl ?? null,
    tls: c.tls
      ? {
          certFile: resolve(baseDir, c.tls.certFile),
          keyFile: resolve(baseDir, c.tls.keyFile),
          ...(c.tls.caFile !== undefined ? { caFile: resolve(baseDir, c.tls.caFile) } : {}),
        }
      : null,
    brokerPasswordFile: c.brokerPasswordFile ? resolve(baseDir, c.brokerPasswordFile) : null,
    logLevel: c.logLevel ?? FLEET_DEFAULTS.logLevel,
    publicUrl: c.publicUrl ? c.publicUrl.replace(/\/+$/, '') : null,
    registry: {
      ...FLEET_DEFAULTS.registry,
      ...c.registry,
      publisherKeys: checkTrustedKeyEntries(c.registry?.publisherKeys ?? [], 'registry.publisherKeys', baseDir, ` (${source})`),
    },
    images: { ...FLEET_DEFAULTS.images, ...c.images, maxInFlightBytes },
    instances: { ...FLEET_DEFAULTS.instances, ...c.instances, advertiseUrl: c.instances?.advertiseUrl ? c.instances.advertiseUrl.replace(/\/+$/, '') : null },
    rollouts: { ...FLEET_DEFAULTS.rollouts, ...c.rollouts },
    convergence: { ...FLEET_DEFAULTS.convergence, ...c.convergence },
    alerts: { ...FLEET_DEFAULTS.alerts, ...c.alerts },
    webhooks: { ...FLEET_DEFAULTS.webhooks, ...c.webhooks },
    storage: c.storage?.url !== undefined ? { url: c.storage.url } : {},
    shifts: shiftsOf(c.shifts, source),
    auth: { ...FLEET_DEFAULTS.auth, ...c.auth },
    training: {
      ...FLEET_DEFAULTS.training,
      ...c.training,
      defaultBackbone: defaultBackboneOf(c.training?.defaultBackbone ?? null, baseDir),
    },
  };
}

/** The shift calendar in start order; two shifts with one start or one name are refused. */
function shiftsOf(shifts: Shift[] | undefined, source: string): Shift[] {
  if (!shifts) return DEFAULT_SHIFTS.map((s) => ({ ...s }));
  const problem = shiftProblem(shifts);
  if (problem) throw new OspreyError('OSP_ERR_CONFIG', `${source}: ${problem}`);
  return [...shifts].sort((a, b) => (a.start < b.start ? -1 : 1));
}

/** A backbone name as is; anything path-like (a separator or `.onnx`) resolved against baseDir. */
function defaultBackboneOf(value: string | null, baseDir: string): string | null {
  if (value === null) return null;
  return /[/\\]|\.onnx$/i.test(value) ? resolve(baseDir, value) : value;
}

/** Command-line overrides (`--port`, `--mqtt-port`, `--broker`, `--data`), applied over the file. */
export interface FleetConfigOverrides {
  httpPort?: number;
  mqttPort?: number;
  brokerUrl?: string;
  /** Relative to the current directory, like any path typed on a command line. */
  dataDir?: string;
  /** Publisher keys added to registry.publisherKeys (`--publisher-key ID=FILE`); files relative to the current directory. */
  publisherKeys?: { id: string; publicKeyFile: string }[];
  /** storage.url (from $OSPREY_STORAGE_URL: a database password stays out of files and command lines). */
  storageUrl?: string;
}

/** The environment variable that sets storage.url for `osprey fleet start` and the fleet's CLI tools. */
export const STORAGE_URL_ENV = 'OSPREY_STORAGE_URL';

/** $OSPREY_STORAGE_URL when set and not empty. */
export function storageUrlFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env[STORAGE_URL_ENV];
  return v ? v : undefined;
}

/**
 * Reads a JSON config file (none: defaults only) and applies overrides; a relative dataDir in the
 * file is relative to the file, not the cwd. The merged result is validated as one config.
 */
export async function loadFleetConfig(file?: string, overrides: FleetConfigOverrides = {}): Promise<FleetConfig> {
  let value: unknown = {};
  let source = 'fleet config';
  if (file !== undefined) {
    source = `fleet config ${file}`;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new OspreyError('OSP_ERR_CONFIG', `${source} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new OspreyError('OSP_ERR_CONFIG', `${source} is not JSON: ${safeLine((err as Error).message, 200)}`, { cause: err });
    }
  }
  const merged = applyOverrides(value, overrides);
  return resolveFleetConfig(merged, file === undefined ? process.cwd() : dirname(resolve(file)), source);
}

function applyOverrides(value: unknown, o: FleetConfigOverrides): unknown {
  // Not an object: leave it for the schema check to report.
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const c = { ...(value as Record<string, unknown>) };
  const section = (key: string) => ({ ...((c[key] as Record<string, unknown> | undefined) ?? {}) });
  if (o.httpPort !== undefined) c.http = { ...section('http'), port: o.httpPort };
  if (o.mqttPort !== undefined) c.mqtt = { ...section('mqtt'), port: o.mqttPort };
  if (o.brokerUrl !== undefined) c.brokerUrl = o.brokerUrl;
  if (o.dataDir !== undefined) c.dataDir = resolve(o.dataDir);
  if (o.storageUrl !== undefined) c.storage = { ...section('storage'), url: o.storageUrl };
  if (o.publisherKeys?.length) {
    const registry = section('registry');
    const listed = Array.isArray(registry.publisherKeys) ? (registry.publisherKeys as unknown[]) : [];
    c.registry = { ...registry, publisherKeys: [...listed, ...o.publisherKeys.map((k) => ({ id: k.id, publicKeyFile: resolve(k.publicKeyFile) }))] };
  }
  return c;
}

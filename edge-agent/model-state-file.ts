/**
 * The edge's memory of model state across restarts, one JSON file in the data directory: the last
 * desired state received, what was active and previous, and the artifacts it refused. Written
 * atomically (temp file, fsync, rename), so a crash leaves the old file or the new one.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { DesiredMessageSchema, ModelArtifactSchema, type DesiredMessage } from '../protocol/messages.js';
import { check } from '../protocol/validator.js';

export const MODEL_STATE_FILE = 'model-state.json';

const strict = { additionalProperties: false } as const;

/** An artifact the edge refused, remembered until the desired state stops naming it. */
export const RefusalSchema = Type.Object(
  {
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    name: Type.String(),
    version: Type.String(),
    role: Type.Union([Type.Literal('active'), Type.Literal('shadow')]),
    code: Type.String(),
    reason: Type.String(),
    at: Type.Integer({ minimum: 0 }),
  },
  strict,
);
export type Refusal = Static<typeof RefusalSchema>;

export const PersistedModelStateSchema = Type.Object(
  {
    v: Type.Literal(1),
    // Checked on its own against DesiredMessageSchema: ajv refuses one $id inside two schemas.
    desired: Type.Union([Type.Unsafe<DesiredMessage>(Type.Object({})), Type.Null()]),
    /** null: the local model from the config. */
    active: Type.Union([ModelArtifactSchema, Type.Null()]),
    /** Whether the active model had passed its probation frames. */
    activeProven: Type.Boolean(),
    previous: Type.Union([ModelArtifactSchema, Type.Literal('local'), Type.Null()]),
    refused: Type.Array(RefusalSchema),
  },
  { $id: 'osprey.v1.edgeModelState', ...strict },
);
export type PersistedModelState = Static<typeof PersistedModelStateSchema>;

/**
 * Reads the state file of `dataDir`. Missing: undefined. Unreadable or invalid: undefined and
 * `onInvalid(reason)` (the edge then starts from its config model and waits for the fleet).
 */
export async function readModelState(dataDir: string, onInvalid: (reason: string) => void): Promise<PersistedModelState | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dataDir, MODEL_STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onInvalid((err as Error).message);
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    onInvalid(`not JSON: ${(err as Error).message}`);
    return undefined;
  }
  const checked = check(PersistedModelStateSchema, value);
  if (!checked.ok) {
    onInvalid(checked.error);
    return undefined;
  }
  if (checked.value.desired !== null) {
    const desired = check(DesiredMessageSchema, checked.value.desired);
    if (!desired.ok) {
      onInvalid(`desired: ${desired.error}`);
      return undefined;
    }
  }
  return checked.value;
}

/** Writes the state file atomically and durably. */
export async function writeModelState(dataDir: string, state: PersistedModelState): Promise<void> {
  const file = path.join(dataDir, MODEL_STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(`${JSON.stringify(state)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export interface ModelStateWriter {
  /** Queues a write; `snapshot` is taken when the write runs, so the newest state is written last. */
  write(snapshot: () => PersistedModelState): void;
  /** Resolves once every queued write has finished (failures are logged, never thrown). */
  flushed(): Promise<void>;
}

/** Writes model-state.json one write after another (a later state never lands before an earlier one). */
export function createModelStateWriter(dataDir: string, onError: (err: unknown) => void): ModelStateWriter {
  let writes: Promise<void> = Promise.resolve();
  return {
    write(snapshot) {
      writes = writes.then(() => writeModelState(dataDir, snapshot())).catch(onError);
    },
    flushed() {
      return writes;
    },
  };
}

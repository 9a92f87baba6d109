/**
 * The one ajv instance of a process. Every received message (and every config file) is checked
 * here; failures come back as values with a one-line reason, never as thrown crashes.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { randomUUID } from 'node:crypto';
import type { TSchema, Static } from '@sinclair/typebox';
import { MessageSchemas, PROTOCOL_VERSION, type MessageByKind } from './messages.js';
import type { MessageKind } from './topics.js';
import { safeLine } from './errors.js';

export const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });

const compiled = new Map<TSchema, ValidateFunction>();

/** Compiles once per schema object, then reuses. */
export function validatorFor<T extends TSchema>(schema: T): ValidateFunction<Static<T>> {
  let fn = compiled.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    compiled.set(schema, fn);
  }
  return fn as ValidateFunction<Static<T>>;
}

/** Formats ajv errors as one line: `/results/0/seq must be >= 1; /ts must be integer`. */
export function formatErrors(errors: ErrorObject[] | null | undefined, max = 5): string {
  if (!errors || errors.length === 0) return 'invalid';
  const parts = errors.slice(0, max).map((e) => {
    const where = e.instancePath || '/';
    const extra =
      e.keyword === 'additionalProperties'
        ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})`
        : '';
    return `${where} ${e.message ?? e.keyword}${extra}`;
  });
  if (errors.length > max) parts.push(`and ${errors.length - max} more`);
  // Paths and property names come from the input: escaped and cut.
  return safeLine(parts.join('; '));
}

/**
 * Deepest nesting a free-form part of a message or a manifest may have (events' `data`, a plug-in's
 * `options`): far beyond any real use, far below what recursive code such as JSON.stringify and
 * structuredClone survives (a few thousand levels overflow the stack).
 */
export const MAX_JSON_DEPTH = 64;

/** True when `value` nests objects or arrays deeper than `max` levels. Iterative: safe at any depth. */
export function nestedDeeperThan(value: unknown, max = MAX_JSON_DEPTH): boolean {
  const stack: unknown[] = [value];
  const depths: number[] = [0];
  while (stack.length > 0) {
    const v = stack.pop();
    const d = depths.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d >= max) return true;
    for (const child of Object.values(v)) {
      if (child !== null && typeof child === 'object') {
        stack.push(child);
        depths.push(d + 1);
      }
    }
  }
  return false;
}

/** Kinds whose schema admits free-form JSON (events' `data`); every other kind is bounded by its schema. */
const FREE_FORM_KINDS: ReadonlySet<MessageKind> = new Set(['events']);

export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

/** Validates a value against a schema. */
export function check<T extends TSchema>(schema: T, value: unknown): Checked<Static<T>> {
  const fn = validatorFor(schema);
  if (fn(value)) return { ok: true, value: value as Static<T> };
  return { ok: false, error: formatErrors(fn.errors) };
}

/** Parses and validates an MQTT payload of the given kind. */
export function decodeMessage<K extends MessageKind>(kind: K, payload: Buffer | string): Checked<MessageByKind[K]> {
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    // V8 quotes the input in its message (line breaks and all).
    return { ok: false, error: `not JSON: ${safeLine((err as Error).message, 200)}` };
  }
  const checked = check(MessageSchemas[kind], value) as Checked<MessageByKind[K]>;
  // Valid, yet too deep for the store's JSON.stringify (a stack overflow there, not a clear refusal).
  if (checked.ok && FREE_FORM_KINDS.has(kind) && nestedDeeperThan(value)) return { ok: false, error: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  return checked;
}

/** Builds a message with its envelope filled in. */
export function envelope<K extends MessageKind>(
  _kind: K,
  edgeId: string,
  body: Omit<MessageByKind[K], 'v' | 'id' | 'ts' | 'edgeId'>,
  now = Date.now(),
): MessageByKind[K] {
  return { v: PROTOCOL_VERSION, id: randomUUID(), ts: now, edgeId, ...body } as MessageByKind[K];
}

/** Encodes a message for MQTT. */
export function encodeMessage(message: object): Buffer {
  return Buffer.from(JSON.stringify(message));
}

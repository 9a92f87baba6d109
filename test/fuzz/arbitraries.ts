/**
 * Shared pieces of the fuzz tests (test/fuzz/*.test.ts): the seed and run count (env
 * OSPREY_FUZZ_SEED, OSPREY_FUZZ_RUNS), the one runner that prints how to replay a failure, the
 * properties every parser must keep (a clear one-line error, bounded memory), and arbitraries of
 * hostile input: mutated JSON, nasty strings, tar headers, image headers, query strings.
 */
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { ErrorCodes, OspreyError, type ErrorCode } from '../../protocol/errors.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, not ${JSON.stringify(raw)}`);
  return n;
}

/** Fixed by default, so every run of the suite tries the same inputs; set OSPREY_FUZZ_SEED to explore. */
export const FUZZ_SEED = envInt('OSPREY_FUZZ_SEED', 14);
/** Runs per property (scaled per test by its cost); raise OSPREY_FUZZ_RUNS for a longer campaign. */
export const FUZZ_RUNS = envInt('OSPREY_FUZZ_RUNS', 200);

// The garbage of thousands of runs (inputs of up to a few hundred KB) would raise the peak RSS that
// assertBoundedMemory watches for a claimed size being allocated; collecting it every few runs
// keeps the peak about what one run holds.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;
const GC_EVERY_RUNS = 50;

/** Runs one property with the suite's seed; a failure names the seed and run count that replay it. */
export async function fuzz<T>(name: string, property: fc.IAsyncPropertyWithHooks<T> | fc.IPropertyWithHooks<T>, scale = 1): Promise<void> {
  const numRuns = Math.max(1, Math.round(FUZZ_RUNS * scale));
  let runs = 0;
  const collecting = (property as fc.IPropertyWithHooks<T>).afterEach((previous: () => void) => {
    const done: unknown = previous();
    if (++runs % GC_EVERY_RUNS === 0) collectGarbage();
    return done as undefined;
  });
  const out = await fc.check(collecting as unknown as fc.IAsyncProperty<T>, { seed: FUZZ_SEED, numRuns });
  if (!out.failed) return;
  // An assertion says what broke; anything else (a crash) needs its stack.
  const cause = out.errorInstance;
  const why = cause instanceof assert.AssertionError ? cause.message : cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
  // JSON shows own "__proto__" keys, which fast-check's own rendering leaves out.
  let json = '';
  try {
    json = JSON.stringify(out.counterexample, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes: ${Buffer.from(v).toString('hex').slice(0, 400)}>` : v)) ?? '';
  } catch {
    json = '(not JSON)';
  }
  throw new Error(
    `fuzz "${name}" failed; replay: OSPREY_FUZZ_SEED=${FUZZ_SEED} OSPREY_FUZZ_RUNS=${FUZZ_RUNS} (path ${out.counterexamplePath})\n${why}\ncounterexample: ${json.slice(0, 3000)}`,
    { cause },
  );
}

/** A message a person or a log line can take as is: one line, no stack, not empty, bounded. */
export function assertOneLine(message: unknown, what: string): void {
  assert.equal(typeof message, 'string', `${what}: message is not a string`);
  const m = message as string;
  assert.ok(m.length > 0, `${what}: empty message`);
  // A line break or a control character from the input could forge log lines or drive a terminal.
  assert.ok(!/[\x00-\x08\x0a-\x1f\x7f]/.test(m), `${what}: message spans several lines or holds control characters: ${JSON.stringify(m.slice(0, 300))}`);
  assert.ok(!/\n\s+at /.test(m) && !/^\s*at .+:\d+:\d+/.test(m), `${what}: message holds a stack trace`);
  assert.ok(m.length <= 4096, `${what}: message of ${m.length} chars`);
}

/** `err` is an OspreyError with one of `codes` and a one-line message; anything else is rethrown. */
export function assertClearError(err: unknown, codes: readonly ErrorCode[], what: string): void {
  if (!(err instanceof OspreyError) || !codes.includes(err.code)) {
    throw new assert.AssertionError({ message: `${what}: expected OspreyError ${codes.join('|')}, got ${err instanceof Error ? `${err.name} ${(err as OspreyError).code ?? ''}: ${err.stack ?? err.message}` : String(err)}` });
  }
  assertOneLine(err.message, what);
}

/** A JSON error answer of an HTTP API: 4xx (or a documented 5xx), `{ error: CODE, message: one line }`. */
export function assertErrorAnswer(res: { statusCode: number; body: string; headers: Record<string, unknown> }, what: string, allow5xx: readonly number[] = []): void {
  assert.ok(res.statusCode < 500 || allow5xx.includes(res.statusCode), `${what}: status ${res.statusCode} ${res.body.slice(0, 300)}`);
  assert.ok(res.statusCode >= 400, `${what}: expected an error status, got ${res.statusCode}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `${what}: error is not JSON`);
  assert.ok(!res.body.includes('\n'), `${what}: error body spans several lines`);
  const body = JSON.parse(res.body) as { error?: unknown; message?: unknown };
  assert.ok(typeof body.error === 'string' && body.error in ErrorCodes, `${what}: unknown error code ${String(body.error)}`);
  assert.notEqual(body.error, 'OSP_ERR_INTERNAL', `${what}: internal error`);
  assertOneLine(body.message, what);
}

/**
 * Runs `fn` and checks that the process's peak resident memory grew by less than `maxBytes`:
 * a parser that believed a claimed length (a tar size, a PNG width) would allocate it.
 */
export async function assertBoundedMemory<T>(maxBytes: number, what: string, fn: () => Promise<T> | T): Promise<T> {
  const peakBefore = process.resourceUsage().maxRSS * 1024;
  const arraysBefore = process.memoryUsage().arrayBuffers;
  const out = await fn();
  const peakGrowth = process.resourceUsage().maxRSS * 1024 - peakBefore;
  const arraysGrowth = process.memoryUsage().arrayBuffers - arraysBefore;
  const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;
  assert.ok(peakGrowth < maxBytes, `${what}: peak RSS grew ${mb(peakGrowth)} (bound ${mb(maxBytes)})`);
  assert.ok(arraysGrowth < maxBytes, `${what}: ArrayBuffers grew ${mb(arraysGrowth)} (bound ${mb(maxBytes)})`);
  return out;
}

// ---- strings and JSON -------------------------------------------------------------------------

/** Strings parsers mishandle: line breaks, prototype keys, paths, escapes, NUL, very long. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '', ' ', '\n', '\r\n', 'a\nb', '\u2028', '\0', '__proto__', 'constructor', 'prototype', 'toString', '..', '../../etc/passwd',
    '/', '%00', '%0a', '%', '%zz', '\\', '"', "'", '${x}', '<script>', 'NaN', '-1', '1e309', '0x10', '∞', '\ud800', 'ü', '😀',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 20 }),
  fc.integer({ min: 200, max: 70_000 }).map((n) => 'x'.repeat(n)),
);

/**
 * Arrays and objects nested 2–2000 deep: past every depth limit, yet within what the test's own
 * JSON.stringify survives (the regression tests send 10 000).
 */
export const deepJson: fc.Arbitrary<unknown> = fc
  .tuple(fc.integer({ min: 2, max: 2000 }), fc.boolean())
  .map(([n, arr]) => JSON.parse(arr ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n)) as unknown);

/** Any JSON value, with nasty strings as keys and values. */
export const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    fc.constantFrom(null, true, false, 0, -1, 1e308, -0, 2 ** 53, 0.5, Number.MAX_SAFE_INTEGER + 2),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    nastyString,
    fc.array(tie('v'), { maxLength: 5 }),
    deepJson,
    fc.array(fc.tuple(nastyString, tie('v')), { maxLength: 5 }).map(ownObject),
  ),
})).v;

/** An object with these own properties (a key "__proto__" stays an own key, as JSON.parse makes it). */
export function ownObject(entries: [string, unknown][]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
}

type Mutation = { path: number[]; op: 'replace' | 'delete' | 'add'; key: string; value: unknown };

/** Mutations of a JSON value: a few of its leaves or members replaced, deleted or added. */
function applyMutation(root: unknown, m: Mutation): unknown {
  if (m.path.length === 0 || root === null || typeof root !== 'object') return m.op === 'replace' ? m.value : root;
  // Walk down by index into each level's keys; stop where the walk runs out.
  let parent = root as Record<string, unknown>;
  for (let depth = 0; ; depth++) {
    const keys = Object.keys(parent);
    if (keys.length === 0 || depth >= m.path.length - 1) break;
    const next = parent[keys[m.path[depth]! % keys.length]!];
    if (next === null || typeof next !== 'object') break;
    parent = next as Record<string, unknown>;
  }
  const keys = Object.keys(parent);
  const key = keys.length ? keys[m.path[m.path.length - 1]! % keys.length]! : m.key;
  if (m.op === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  } else if (m.op === 'add' && !Array.isArray(parent)) {
    Object.defineProperty(parent, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
  } else {
    // Not `parent[key] =`: for a key "__proto__" that would set the prototype, which JSON never does.
    Object.defineProperty(parent, key, { value: m.value, enumerable: true, writable: true, configurable: true });
  }
  return root;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  path: fc.array(fc.nat(50), { minLength: 1, maxLength: 5 }),
  op: fc.constantFrom('replace', 'delete', 'add'),
  key: nastyString,
  value: anyJson,
});

/** `valid` with 1–4 random mutations: mostly near-valid input, which reaches the deeper checks. */
export function mutated(valid: unknown): fc.Arbitrary<unknown> {
  return fc.array(mutation, { minLength: 1, maxLength: 4 }).map((ms) => ms.reduce((v, m) => applyMutation(v, m), structuredClone(valid)));
}

/** Input for a parser of JSON values: valid, mutated, or anything; always as JSON.parse would give it. */
export function jsonInput(valid: unknown): fc.Arbitrary<unknown> {
  return fc
    .oneof({ weight: 1, arbitrary: fc.constant(valid) }, { weight: 6, arbitrary: mutated(valid) }, { weight: 2, arbitrary: anyJson })
    .map((v) => (v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as unknown)));
}

/**
 * A JSON payload as it might arrive: mutated JSON, JSON cut short, deep nesting, raw bytes, huge
 * numbers. Text stays a string (so a counterexample prints readably); pass it through `toBytes`.
 */
export function payloadBytes(valid: unknown): fc.Arbitrary<string | Uint8Array> {
  const text = JSON.stringify(valid);
  return fc.oneof(
    { weight: 6, arbitrary: jsonInput(valid).map((v) => JSON.stringify(v) ?? 'undefined') },
    { weight: 2, arbitrary: fc.nat(text.length).map((n) => text.slice(0, n)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
    { weight: 1, arbitrary: fc.constantFrom('{"a":\n\nx}', '{"v":1e999999}', '\ufeff{}', '{"__proto__":{"polluted":1}}', 'null', '""') },
  );
}

/** The bytes of a payload from payloadBytes. */
export const toBytes = (p: string | Uint8Array): Buffer => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p));

// ---- tar archives ------------------------------------------------------------------------------

/** A ustar header field rewritten: a claimed size (up to 8 GiB), a name, a type, raw bytes. */
export type TarEdit =
  | { kind: 'size'; octal: string }
  | { kind: 'name'; name: string }
  | { kind: 'type'; type: number }
  | { kind: 'bytes'; at: number; bytes: Uint8Array }
  | { kind: 'truncate'; at: number };

export const tarEdit: fc.Arbitrary<TarEdit> = fc.oneof(
  fc.record({ kind: fc.constant('size' as const), octal: fc.oneof(fc.bigInt({ min: 0n, max: 0o77777777777n }).map((n) => n.toString(8).padStart(11, '0')), nastyString.map((s) => s.slice(0, 11))) }),
  fc.record({ kind: fc.constant('name' as const), name: nastyString.map((s) => s.slice(0, 100)) }),
  fc.record({ kind: fc.constant('type' as const), type: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('bytes' as const), at: fc.nat(4096), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(4096) }),
);

/**
 * Applies edits to the header at `headerAt` of an archive (or anywhere for raw bytes), and
 * re-seals its checksum when `reseal` (so the edit reaches the checks behind the checksum).
 */
export function editArchive(archive: Buffer, edits: TarEdit[], headerAt: number, reseal: boolean): Buffer {
  let out = Buffer.from(archive);
  for (const e of edits) {
    if (e.kind === 'truncate') {
      out = out.subarray(0, e.at % (out.length + 1));
      continue;
    }
    if (headerAt + 512 > out.length) continue;
    if (e.kind === 'size') out.write(e.octal.padEnd(11, '\0').slice(0, 11) + '\0', headerAt + 124, 12, 'latin1');
    else if (e.kind === 'name') {
      out.fill(0, headerAt, headerAt + 100);
      out.write(e.name, headerAt, 100, 'utf8');
    } else if (e.kind === 'type') out[headerAt + 156] = e.type;
    else Buffer.from(e.bytes).copy(out, e.at % out.length);
  }
  if (reseal && headerAt + 512 <= out.length) {
    out.fill(32, headerAt + 148, headerAt + 156);
    let sum = 0;
    for (let i = headerAt; i < headerAt + 512; i++) sum += out[i]!;
    out.write(sum.toString(8).padStart(6, '0') + '\0 ', headerAt + 148, 8, 'latin1');
  }
  return out;
}

// ---- images ------------------------------------------------------------------------------------

/** A JPEG's first bytes: SOI, then segments with random markers and lengths, maybe a SOF with random dimensions. */
export const jpegHeader: fc.Arbitrary<Buffer> = fc
  .array(
    fc.oneof(
      fc.record({ marker: fc.integer({ min: 0, max: 255 }), body: fc.uint8Array({ maxLength: 24 }), length: fc.integer({ min: 0, max: 0xffff }) }),
      fc.record({ marker: fc.constantFrom(0xc0, 0xc2), body: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 5 })).map(([h, w, c]) => Uint8Array.from([8, h >> 8, h & 255, w >> 8, w & 255, c])), length: fc.constant(-1) }),
    ),
    { maxLength: 6 },
  )
  .map((segs) => {
    const parts = [Buffer.from([0xff, 0xd8])];
    for (const s of segs) {
      const len = s.length < 0 ? s.body.length + 2 : s.length;
      parts.push(Buffer.from([0xff, s.marker, len >> 8, len & 255]), Buffer.from(s.body));
    }
    return Buffer.concat(parts);
  });

/** A PNG signature and an IHDR-like chunk with random length, type, dimensions and colour type. */
export const pngHeader: fc.Arbitrary<Buffer> = fc
  .record({
    length: fc.oneof(fc.constant(13), fc.integer({ min: 0, max: 0xffffffff })),
    type: fc.oneof(fc.constant('IHDR'), fc.string({ unit: 'grapheme-ascii', minLength: 4, maxLength: 4 })),
    width: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff })),
    height: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff })),
    depth: fc.constantFrom(1, 2, 4, 8, 16, 0, 255),
    colour: fc.constantFrom(0, 2, 3, 4, 6, 1, 7, 255),
    tail: fc.uint8Array({ maxLength: 64 }),
  })
  .map((p) => {
    const b = Buffer.alloc(33);
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
    b.writeUInt32BE(p.length, 8);
    b.write(p.type, 12, 4, 'latin1');
    b.writeUInt32BE(p.width, 16);
    b.writeUInt32BE(p.height, 20);
    b[24] = p.depth;
    b[25] = p.colour;
    return Buffer.concat([b, Buffer.from(p.tail)]);
  });

/** Real image bytes cut short and with a few bytes overwritten. */
export function corrupted(real: Buffer): fc.Arbitrary<Buffer> {
  return fc
    .record({ cut: fc.nat(real.length), flips: fc.array(fc.tuple(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }) })
    .map(({ cut, flips }) => {
      const b = Buffer.from(real);
      for (const [at, v] of flips) b[at] = v;
      return b.subarray(0, Math.max(1, cut));
    });
}

/** Bytes a camera or an attacker might send as an image. */
export function imageBytes(realImages: Buffer[]): fc.Arbitrary<Buffer> {
  return fc.oneof(
    jpegHeader,
    pngHeader,
    ...realImages.map(corrupted),
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.constantFrom('<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>', 'GIF89a', 'BM', 'II*\0').map((s) => Buffer.from(s)),
  );
}

// ---- HTTP --------------------------------------------------------------------------------------

/** encodeURIComponent, with lone surrogates (which it refuses) replaced. */
const encode = (s: string): string => encodeURIComponent(s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'));

/** One query-string or path piece: raw, percent-encoded, or broken percent-encoding. */
export const urlPiece: fc.Arbitrary<string> = fc.oneof(
  nastyString.map((s) => encode(s.slice(0, 300)).replace(/%25/g, () => '%')),
  nastyString.map((s) => encode(s.slice(0, 2000))),
  fc.constantFrom('%', '%e0%a4%a', '%c0%ae%c0%ae', '%ff', '%00', '..%2f', '+', '&', '=', '[]', '[0]', '1e400', '-0', '9007199254740993', '2025-13-45T99:99'),
  // Time ranges and buckets at their edges: epoch 0, far future, tiny and huge buckets.
  fc.constantFrom('0', '1', '8640000000000000', '8640000000000001', '-8640000000000000', '1970-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '1s', '0s', '1ms', '10s', '99999999d', '1h', 'csv', 'json', 'ok', 'defect'),
  // Numbers at and past the edges of what a schema's integer coercion takes.
  fc.constantFrom('1e400', 'Infinity', '-Infinity', 'NaN', '1e3', '1.5', '0x10', '-1', '9'.repeat(400), '00001', ' 1'),
  // Result cursors as the server writes them (base64url of "ts.id"), at their limits.
  fc.constantFrom('0.0', '1.1', '999999999999999.999999999999999', '1.-1', '1e3.1').map((c) => Buffer.from(c).toString('base64url')),
  fc.integer().map(String),
);

/** A query string: known and unknown names, repeated names, values of every shape. */
export function queryString(names: readonly string[]): fc.Arbitrary<string> {
  const name = names.length ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: urlPiece }) : urlPiece;
  return fc
    .array(fc.tuple(name, fc.option(urlPiece, { nil: undefined })), { maxLength: 6 })
    .map((pairs) => (pairs.length ? '?' + pairs.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&') : ''));
}

/** A request path from a route pattern: each `:param` filled with a url piece, sometimes a piece appended. */
export function routePath(pattern: string, known: Record<string, readonly string[]> = {}): fc.Arbitrary<string> {
  const parts = pattern.split('/').map((seg) => (seg.startsWith(':') ? fc.oneof(fc.constantFrom(...(known[seg.slice(1)] ?? ['x'])), urlPiece) : fc.constant(seg)));
  return fc.tuple(fc.tuple(...parts), fc.option(urlPiece, { freq: 8, nil: undefined })).map(([segs, extra]) => segs.join('/') + (extra === undefined ? '' : `/${extra}`));
}

// ---- valid samples to mutate -------------------------------------------------------------------

/** One valid payload of every MQTT message kind, for `edgeId`. */
export function sampleMessages(edgeId: string, storeId = 'store-fuzz-0001'): Record<'desired' | 'state' | 'results' | 'ack' | 'telemetry' | 'events', Record<string, unknown>> {
  const env = { v: 1, id: 'm-1', ts: 1_700_000_000_000, edgeId };
  const artifact = { name: 'part-check', version: '1.0.0', sha256: 'a'.repeat(64), size: 4096, url: '/api/artifacts/' + 'a'.repeat(64), signature: 'c2ln' };
  return {
    desired: { ...env, active: artifact, shadow: null, config: { thresholds: { default: 0.5, perLabel: { dent: 0.4 } }, sampling: { keepDefectImages: true, uncertainBand: 0.1, keepGoodEvery: 100 } }, configVersion: 3 },
    state: { ...env, online: true, line: 'line-1', cameras: ['cam1'], agentVersion: '0.1.0', startedAt: 1, active: { name: 'part-check', version: '1.0.0', sha256: 'a'.repeat(64) }, previous: null, shadow: null, configVersion: 3, lastSeq: 5, ackedSeq: 3, storeId, errors: [] },
    results: {
      ...env,
      storeId,
      fromSeq: 1,
      toSeq: 2,
      results: [
        { seq: 1, ts: 1_700_000_000_000, camera: 'cam1', source: 'http', frame: 'f-1', model: 'part-check@1.0.0', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 3 },
        { seq: 2, ts: 1_700_000_000_001, camera: 'cam1', source: 'folder', model: 'part-check@1.0.0', verdict: 'defect', label: 'dent', score: 0.9, latencyMs: 4, detections: [{ label: 'dent', score: 0.9, box: [1, 2, 3, 4] }], shadow: { model: 'part-check@1.1.0', verdict: 'ok', label: 'good', score: 0.2, latencyMs: 5 } },
      ],
    },
    ack: { ...env, ackSeq: 2, storeId },
    telemetry: {
      ...env, intervalMs: 1000, frames: 10, defects: 1, failed: 0, failures: { OSP_ERR_IMAGE_DECODE: 1 }, fps: 10, latencyMs: { count: 10, p50: 3, p95: 5, p99: 6, max: 7 },
      queueDepth: 0, lastSeq: 5, ackedSeq: 3, pendingResults: 2, cpuPercent: 12, rssBytes: 1 << 26, perModel: { 'part-check@1.0.0': { frames: 10, defects: 1 } },
    },
    events: { ...env, kind: 'alert', level: 'warn', message: 'disk almost full', data: { freeBytes: 1 } },
  };
}

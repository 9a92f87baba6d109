/**
 * The one registry of Osprey error codes. Every error that crosses a component boundary is an
 * OspreyError with one of these codes; callers branch on `code`, never on the message.
 */
export const ErrorCodes = {
  OSP_ERR_CONFIG: 'a configuration file is missing, unreadable or invalid',
  OSP_ERR_MESSAGE_INVALID: 'an MQTT payload is not JSON or does not match its schema',
  OSP_ERR_TOPIC: 'an MQTT topic is not an Osprey topic',
  OSP_ERR_IMAGE_EMPTY: 'the image has zero bytes',
  OSP_ERR_IMAGE_DECODE: 'the bytes are not a decodable image (truncated, corrupt or not an image)',
  OSP_ERR_IMAGE_TOO_LARGE: 'the image is larger than the configured pixel limit',
  OSP_ERR_CONTENT_TYPE: 'the request content type is not an accepted image type',
  OSP_ERR_QUEUE_FULL: 'the inspection queue is full; retry later',
  OSP_ERR_SHUTTING_DOWN: 'the agent is shutting down',
  OSP_ERR_BUSY: 'the request bodies held at once are at their configured cap; retry later',
  OSP_ERR_STORE: 'the local result store could not read or write',
  OSP_ERR_INPUT_READ: 'an input file could not be read or moved',
  OSP_ERR_MODEL_MANIFEST: 'a model manifest is missing or invalid',
  OSP_ERR_MODEL_CHECKSUM: 'model.onnx does not match the sha256 in its manifest',
  OSP_ERR_MODEL_LOAD: 'onnxruntime could not load the model',
  OSP_ERR_MODEL_SIGNATURE: 'a model package is unsigned, or not signed by a trusted key (fleet.trustedKeys at the edge, registry.publisherKeys at the fleet)',
  OSP_ERR_MODEL_ORIGIN: "an artifact URL points outside the edge's fleet origin(s) (fleet.httpUrl, fleet.artifactOrigins); nothing is fetched",
  OSP_ERR_MODEL_INPUT: 'the model input does not match the manifest',
  OSP_ERR_MODEL_OUTPUT: 'the model output cannot be read for the manifest task',
  OSP_ERR_MODEL_PLUGIN: 'a post-processing plug-in failed',
  OSP_ERR_MODEL_CLOSED: 'the model runner was closed',
  OSP_ERR_MODEL_DOWNLOAD: 'a model artifact could not be downloaded (network, HTTP status, size); retried with backoff',
  OSP_ERR_ARTIFACT_CHECKSUM: 'the downloaded artifact bytes do not match the sha256 named in the desired state',
  OSP_ERR_MODEL_PROBATION: 'a newly activated model failed too many of its first frames and was reverted',
  OSP_ERR_SHADOW_TIMEOUT: 'the shadow candidate did not answer within its wait budget (the verdict did not wait longer)',
  OSP_ERR_INFERENCE: 'onnxruntime failed while running the model',
  OSP_ERR_NOT_FOUND: 'the requested resource does not exist',
  OSP_ERR_BAD_REQUEST: 'the request is malformed',
  OSP_ERR_INTERNAL: 'an unexpected error inside Osprey (a bug; see the log)',
  OSP_ERR_USAGE: 'a command-line argument is missing or invalid',
  OSP_ERR_BROKER: 'the MQTT broker cannot be started or reached',
  OSP_ERR_CONFLICT: 'the request conflicts with stored state (an immutable model version, a rollout that does not allow the action, overlapping rollouts)',
  OSP_ERR_RANGE: 'the requested byte range cannot be satisfied',
  OSP_ERR_IMAGE_CHECKSUM: 'an uploaded image does not match the sha256 its sender named',
  OSP_ERR_TOO_LARGE: 'a request body is larger than its configured limit (the message names the setting)',
  OSP_ERR_QUOTA: 'a fleet store is at its configured quota (the message names the setting); free space or raise it',
  OSP_ERR_UNAUTHENTICATED: 'no valid credential: sign in, or send an API token or edge credential',
  OSP_ERR_FORBIDDEN: 'the credential is valid but its role or identity does not allow this',
  OSP_ERR_RATE_LIMITED: 'too many attempts; wait before trying again',
  OSP_ERR_RESULT_UNSEEN: 'an image names a result the fleet has not yet heard of from that edge; retried until the result or the edge\'s lastSeq arrives',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** An error with a stable code; the original error, if any, is kept as `cause`. */
export class OspreyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OspreyError';
    this.code = code;
  }
}

/** True when `err` is an OspreyError, optionally with the given code. */
export function isOspreyError(err: unknown, code?: ErrorCode): err is OspreyError {
  return err instanceof OspreyError && (code === undefined || err.code === code);
}

/** One line, for logs and HTTP answers: the message with newlines folded. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Text built from outside input (a field name, a file name, a parser's message quoting the input)
 * made fit for one log line: control characters (line breaks included) escaped as \uXXXX, and at
 * most `max` characters, so a hostile name can neither forge log lines nor flood them.
 */
export function safeLine(text: string, max = 500): string {
  const escaped = text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}

/**
 * The one-line message for an error Fastify's router raises before any route or hook runs (a URL
 * with broken percent-encoding, an over-long path parameter); its own message quotes the whole URL.
 */
export function routerErrorMessage(err: { code?: string; message: string }): string {
  if (err.code === 'FST_ERR_BAD_URL') return 'the URL is not valid (malformed percent-encoding)';
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') return 'a URL path parameter is too long';
  return safeLine(oneLine(err), 200);
}

/** HTTP status per error code, for the edge's and the fleet's HTTP APIs alike; codes not listed are 500. */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  OSP_ERR_IMAGE_EMPTY: 400,
  OSP_ERR_BAD_REQUEST: 400,
  OSP_ERR_UNAUTHENTICATED: 401,
  OSP_ERR_FORBIDDEN: 403,
  OSP_ERR_NOT_FOUND: 404,
  OSP_ERR_CONFLICT: 409,
  OSP_ERR_IMAGE_TOO_LARGE: 413,
  OSP_ERR_TOO_LARGE: 413,
  OSP_ERR_CONTENT_TYPE: 415,
  OSP_ERR_RANGE: 416,
  OSP_ERR_IMAGE_DECODE: 422,
  OSP_ERR_IMAGE_CHECKSUM: 422,
  // A package that is well-formed HTTP but not an acceptable model package.
  OSP_ERR_MODEL_MANIFEST: 422,
  OSP_ERR_MODEL_CHECKSUM: 422,
  OSP_ERR_RATE_LIMITED: 429,
  OSP_ERR_MODEL_SIGNATURE: 422,
  OSP_ERR_MODEL_LOAD: 422,
  OSP_ERR_MODEL_INPUT: 422,
  OSP_ERR_MODEL_OUTPUT: 422,
  OSP_ERR_QUEUE_FULL: 503,
  OSP_ERR_SHUTTING_DOWN: 503,
  OSP_ERR_BUSY: 503,
  OSP_ERR_RESULT_UNSEEN: 503,
  OSP_ERR_QUOTA: 507,
};

/** The HTTP status for an OspreyError code (500 for codes that are the server's fault). */
export function httpStatusFor(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500;
}

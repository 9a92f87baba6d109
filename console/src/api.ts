/**
 * The console's only way to the fleet: same-origin calls to the public HTTP API. The session
 * cookie is HttpOnly and goes by itself; state changes add the session's CSRF header. Any 401
 * means the session is gone, and the console returns to its sign-in form.
 */
import type { EdgeView } from '../../fleet-manager/http-schemas.js';
import type { SessionInfo } from '../../fleet-manager/people-schemas.js';

export type { EdgeView, SessionInfo };
export type EdgeEvent = { ts: number; receivedAt: number; kind: string; level: string; message: string; data: Record<string, unknown> | null };

/** An API refusal: its status, the error code and the one-line message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Api {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  /** POSTs a file or form as it is (a tar, an ONNX file, multipart), with the CSRF header. */
  upload<T>(path: string, body: Blob | FormData): Promise<T>;
  /** Any other state change (PUT, PATCH, DELETE), with the CSRF header. */
  send<T>(method: 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T>;
  put<T>(path: string, body: unknown): Promise<T>;
  del<T>(path: string): Promise<T>;
  /** Signs in; the answer's CSRF token is kept for later state changes. */
  signIn(username: string, password: string): Promise<SessionInfo>;
  signOut(): Promise<void>;
  /** This browser's session, or null when signed out (`GET /api/auth/session`: a 200 either way). */
  me(): Promise<SessionInfo | null>;
}

/** `onSignedOut` runs on every 401 (the caller shows the sign-in form). */
export function createApi(onSignedOut: () => void): Api {
  let csrf: string | null = null;

  async function call<T>(method: string, path: string, body?: unknown, quiet = false): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const raw = body instanceof Blob || body instanceof FormData;
    // A Blob goes with its own type; FormData lets the browser write the multipart boundary.
    if (body instanceof Blob) headers['content-type'] = body.type || 'application/octet-stream';
    else if (body !== undefined && !raw) headers['content-type'] = 'application/json';
    if (method !== 'GET' && csrf) headers['x-osprey-csrf'] = csrf;
    const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined && { body: raw ? (body as BodyInit) : JSON.stringify(body) }) });
    if (res.status === 204) return undefined as T;
    const data = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
    if (!res.ok) {
      if (res.status === 401 && !quiet) {
        csrf = null;
        onSignedOut();
      }
      throw new ApiError(res.status, data.error ?? 'OSP_ERR_HTTP', data.message ?? `${res.status} ${res.statusText}`);
    }
    return data as T;
  }

  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    upload: (path, body) => call('POST', path, body),
    send: (method, path, body) => call(method, path, body),
    put: (path, body) => call('PUT', path, body),
    del: (path) => call('DELETE', path),
    async signIn(username, password) {
      // A refused sign-in is the form's error, not a session that ended.
      const s = await call<SessionInfo>('POST', '/api/auth/sign-in', { username, password }, true);
      csrf = s.csrfToken;
      return s;
    },
    async signOut() {
      await call('POST', '/api/auth/sign-out', {});
      csrf = null;
    },
    async me() {
      const { session } = await call<{ session: SessionInfo | null }>('GET', '/api/auth/session');
      csrf = session?.csrfToken ?? null;
      return session;
    },
  };
}

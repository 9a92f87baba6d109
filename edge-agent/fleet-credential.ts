/**
 * The edge's own credential (`ospe_…`, from `osprey edge enroll`): read once at start from
 * `fleet.credentialFile`, then used as the MQTT password (username and client id: the edge id)
 * and as `Authorization: Bearer` on the fleet's HTTP routes, only ever towards the fleet's own
 * origin (`fleet.httpUrl`). Never logged, never in an error message.
 */
import { stat, readFile } from 'node:fs/promises';
import { OspreyError } from '../protocol/errors.js';

/** The credential's shape (fleet-manager/auth/secrets.ts mints it); anything else is a wrong file. */
const EDGE_CREDENTIAL = /^ospe_[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{43}$/;

export interface FleetCredential {
  /** MQTT CONNECT options: username and client id the edge id, password the credential. */
  mqtt(edgeId: string): { username: string; password: string };
  /** `{ authorization }` for a request to `url` when it is the fleet's origin; {} for any other server. */
  headersFor(url: string): Record<string, string>;
}

/** Builds the credential's uses from its text; `fleetHttpUrl` is the only origin it is sent to. */
export function fleetCredential(secret: string, fleetHttpUrl: string | undefined): FleetCredential {
  const origin = fleetHttpUrl ? new URL(fleetHttpUrl).origin : undefined;
  return {
    mqtt: (edgeId) => ({ username: edgeId, password: secret }),
    headersFor(url): Record<string, string> {
      let target: string;
      try {
        target = new URL(url).origin;
      } catch {
        return {};
      }
      return origin !== undefined && target === origin ? { authorization: `Bearer ${secret}` } : {};
    },
  };
}

/**
 * Reads the credential file. OSP_ERR_CONFIG (one line, naming the file, never its content) when
 * it is missing or unreadable, readable or writable by other users (it must be 0600 or
 * stricter, as `osprey edge enroll` writes it), or does not hold one edge credential.
 */
export async function readFleetCredential(file: string, fleetHttpUrl: string | undefined): Promise<FleetCredential> {
  const what = `config fleet.credentialFile (${file})`;
  let text: string;
  try {
    const s = await stat(file);
    if (process.platform !== 'win32' && (s.mode & 0o077) !== 0) {
      throw new OspreyError('OSP_ERR_CONFIG', `${what}: other users may read or change it (mode ${(s.mode & 0o777).toString(8)}); run chmod 600 on it`);
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof OspreyError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OspreyError('OSP_ERR_CONFIG', `${what}: cannot read it (${code}); enroll the edge with "osprey edge enroll"`, { cause: err });
  }
  const secret = text.trim();
  if (!EDGE_CREDENTIAL.test(secret)) {
    throw new OspreyError('OSP_ERR_CONFIG', `${what}: does not hold an edge credential (ospe_…); enroll the edge with "osprey edge enroll"`);
  }
  return fleetCredential(secret, fleetHttpUrl);
}

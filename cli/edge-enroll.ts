/**
 * `osprey edge enroll`: exchanges a one-time enrollment token for this edge's credential and
 * writes it to a file only its owner can read (0600). The credential is never printed; the
 * command prints the config lines that point the edge at it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import path from 'node:path';
import { ErrorCodes, OspreyError, oneLine, type ErrorCode } from '../protocol/errors.js';
import { loadEdgeConfig } from '../edge-agent/config.js';
import { parse } from './args.js';

export const edgeEnrollHelp = `Usage: osprey edge enroll --fleet URL --token T --edge-id ID [--out FILE | --config FILE] [--ca FILE]

Exchanges a one-time enrollment token (made by a fleet admin) for this edge's own credential,
writes it to FILE with mode 0600 and prints the edge config lines that use it. The credential
is never printed. Enrolling again (a new token) replaces the edge's credential: the old one
stops working at once.

Options:
  --fleet URL       the fleet manager's HTTP URL, e.g. http://fleet.plant:8080 (required)
  --token T         the enrollment token, ospn_… (required)
  --edge-id ID      this edge's id, as in its config (required)
  --out FILE        where the credential goes (default: fleet.credential in the dataDir of
                    --config, else in the current directory)
  --config FILE     the edge config: its dataDir holds the credential by default
  --ca FILE         with an https:// fleet: the CA its certificate must be signed by (the
                    fleet's private CA, ca.pem); it becomes the edge's fleet.caFile
  -h, --help        this text`;

/** The loopback and wildcard hosts a fleet may name for its own broker. */
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '0.0.0.0', '[::]']);

/** The broker URL as this edge reaches it: a loopback host the fleet names is the fleet's host seen from here. */
export function brokerUrlFor(advertised: string | undefined, fleetUrl: string): string | undefined {
  if (!advertised) return undefined;
  try {
    const u = new URL(advertised);
    if (LOCAL_HOSTS.has(u.hostname)) u.hostname = new URL(fleetUrl).hostname;
    return u.toString().replace(/\/$/, '');
  } catch {
    return advertised;
  }
}

/** Writes `text` to `file` atomically, readable by its owner only (0600 from the first byte). */
async function writePrivate(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.chmod(0o600); // whatever the umask did
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
}

export async function edgeEnrollCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    fleet: { type: 'string' },
    token: { type: 'string' },
    'edge-id': { type: 'string' },
    out: { type: 'string' },
    config: { type: 'string' },
    ca: { type: 'string' },
  });
  if (values.help) {
    console.log(edgeEnrollHelp);
    return 0;
  }
  const fleet = values.fleet;
  const token = values.token;
  const edgeId = values['edge-id'];
  if (!fleet) throw new OspreyError('OSP_ERR_USAGE', 'edge enroll needs --fleet URL');
  if (!token) throw new OspreyError('OSP_ERR_USAGE', 'edge enroll needs --token T');
  if (!edgeId) throw new OspreyError('OSP_ERR_USAGE', 'edge enroll needs --edge-id ID');
  let base: URL;
  try {
    base = new URL(fleet);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new OspreyError('OSP_ERR_USAGE', `--fleet must be an http:// or https:// URL, got "${fleet}"`);
  }
  let out = values.out;
  if (out === undefined && values.config !== undefined) {
    const config = await loadEdgeConfig(values.config);
    if (config.edgeId !== edgeId) throw new OspreyError('OSP_ERR_USAGE', `--edge-id ${edgeId} is not the edgeId of ${values.config} (${config.edgeId})`);
    out = path.join(config.dataDir, 'fleet.credential');
  }
  const file = path.resolve(out ?? 'fleet.credential');
  let ca: Buffer | undefined;
  if (values.ca !== undefined) {
    if (base.protocol !== 'https:') throw new OspreyError('OSP_ERR_USAGE', '--ca goes with an https:// --fleet URL');
    ca = await readFile(values.ca).catch((err: NodeJS.ErrnoException) => {
      throw new OspreyError('OSP_ERR_USAGE', `cannot read --ca ${values.ca} (${err.code ?? err.message})`, { cause: err });
    });
  }
  const fleetSection = await enrollEdge({ fleetUrl: base, token, edgeId, file, ...(ca && { ca, caFile: path.resolve(values.ca!) }) });
  console.log(`enrolled ${edgeId} with the fleet at ${fleetSection.httpUrl}; its credential is in ${file} (mode 0600)`);
  console.log('Put these in the "fleet" section of the edge config, then (re)start the edge:');
  for (const [k, v] of Object.entries(fleetSection)) console.log(`  ${JSON.stringify(k)}: ${JSON.stringify(v)},`);
  return 0;
}

/** The edge config's `fleet` fields that enrollment decides. */
export interface EnrolledFleet {
  mqttUrl?: string;
  httpUrl: string;
  credentialFile: string;
  caFile?: string;
}

/**
 * Exchanges an enrollment token for the edge's credential at `POST /api/edges/enroll` and writes
 * it to `file` (mode 0600). `osprey edge enroll` and `osprey demo` both enroll through it.
 */
export async function enrollEdge(opts: { fleetUrl: URL; token: string; edgeId: string; file: string; ca?: Buffer; caFile?: string }): Promise<EnrolledFleet> {
  const { fleetUrl: base, token, edgeId, file } = opts;
  const url = new URL('api/edges/enroll', base.href.endsWith('/') ? base.href : `${base.href}/`).toString();
  let res: Response;
  // With a CA the fleet's certificate is checked against it alone (its private CA).
  const dispatcher = opts.ca ? new Agent({ connect: { ca: opts.ca } }) : undefined;
  try {
    res = (await undiciFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, edgeId }),
      signal: AbortSignal.timeout(30_000),
      ...(dispatcher && { dispatcher }),
    })) as unknown as Response;
  } catch (err) {
    await dispatcher?.close();
    throw new OspreyError('OSP_ERR_USAGE', `cannot reach the fleet at ${url}: ${oneLine((err as Error).cause ?? err)}`, { cause: err });
  }
  const text = await res.text();
  await dispatcher?.close();
  let body: { error?: string; message?: string; edgeId?: string; credential?: string; mqttUrl?: string; caPem?: string };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new OspreyError('OSP_ERR_BAD_REQUEST', `the fleet at ${url} answered HTTP ${res.status} without JSON`);
  }
  if (!res.ok || typeof body.credential !== 'string') {
    const code: ErrorCode = body.error !== undefined && body.error in ErrorCodes ? (body.error as ErrorCode) : 'OSP_ERR_UNAUTHENTICATED';
    throw new OspreyError(code, `enrollment of ${edgeId} refused by the fleet (HTTP ${res.status} ${body.error ?? ''}): ${body.message ?? 'no credential in the answer'}`);
  }
  await writePrivate(file, `${body.credential}\n`);
  const mqttUrl = brokerUrlFor(body.mqttUrl, base.href);
  const fleetSection: EnrolledFleet = { ...(mqttUrl && { mqttUrl }), httpUrl: base.href.replace(/\/+$/, ''), credentialFile: file };
  if (opts.caFile) fleetSection.caFile = opts.caFile;
  else if (body.caPem) {
    const caFile = path.join(path.dirname(file), 'fleet-ca.pem');
    await writePrivate(caFile, body.caPem);
    fleetSection.caFile = caFile;
  }
  return fleetSection;
}

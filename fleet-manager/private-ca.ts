/**
 * A private certificate authority for the fleet's TLS listeners (docs/security-tls.md): a CA that
 * edges trust through their `fleet.caFile`, and a server certificate it signs for the fleet's
 * HTTP and MQTT ports. Keys are RSA 2048 made by node:crypto; the certificates are built with
 * node-forge (node:crypto reads X.509 but cannot issue it).
 *
 * Files in `dir`: ca.pem, ca.key (0600), fleet.pem, fleet.key (0600). Idempotent: an existing
 * CA is always kept (replacing it would cut off every edge that trusts it); the server
 * certificate is kept while it is signed by that CA, covers every requested host and stays valid
 * for RENEW_BEFORE_MS more, and is issued again (new key, same CA) otherwise.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import forge from 'node-forge';
import { OspreyError } from '../protocol/errors.js';

export interface PrivateCaOptions {
  /** DNS names and IP addresses the server certificate must cover; localhost, 127.0.0.1 and ::1 are always added. */
  hosts: string[];
  /** Clock of the validity periods (tests). */
  now?: Date;
}

export interface PrivateCaFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** False when every file was already there and still fit; true when any was written. */
  created: boolean;
}

const DAY_MS = 86_400_000;
/** The CA outlives many server certificates: replacing it means handing every edge a new ca.pem. */
export const CA_VALIDITY_DAYS = 3650;
/** 825 days: the longest server-certificate lifetime common TLS clients accept. */
export const SERVER_VALIDITY_DAYS = 825;
/** A server certificate expiring sooner than this is issued again. */
export const RENEW_BEFORE_MS = 30 * DAY_MS;
/** Hosts the fleet's own MQTT client and a local browser use (loopback by name, IPv4 and IPv6). */
export const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];

const DNS_NAME = /^(?=.{1,253}$)(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** The requested hosts plus the defaults, deduplicated; throws OSP_ERR_CONFIG for one that is neither a DNS name nor an IP. */
export function normalizeHosts(hosts: string[]): string[] {
  const out: string[] = [];
  for (const raw of [...DEFAULT_HOSTS, ...hosts]) {
    const host = raw.trim().replace(/^\[(.*)\]$/, '$1');
    if (isIP(host) === 0 && !DNS_NAME.test(host)) {
      throw new OspreyError('OSP_ERR_CONFIG', `TLS host "${raw}" is neither a DNS name nor an IP address`);
    }
    const key = isIP(host) ? host : host.toLowerCase();
    if (!out.includes(key)) out.push(key);
  }
  return out;
}

/** Makes (or reuses) the private CA and the fleet's server certificate in `dir`. */
export async function ensurePrivateCa(dir: string, opts: PrivateCaOptions): Promise<PrivateCaFiles> {
  const now = opts.now ?? new Date();
  const hosts = normalizeHosts(opts.hosts);
  const files = {
    caFile: path.join(dir, 'ca.pem'),
    caKeyFile: path.join(dir, 'ca.key'),
    certFile: path.join(dir, 'fleet.pem'),
    keyFile: path.join(dir, 'fleet.key'),
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let created = false;

  let ca = await readPair(files.caFile, files.caKeyFile);
  if (ca === 'partial') {
    throw new OspreyError(
      'OSP_ERR_CONFIG',
      `${dir} holds only one of ca.pem and ca.key; restore the other, or remove both to make a new CA (every edge then needs the new ca.pem)`,
    );
  }
  if (!ca) {
    ca = issueCa(now);
    // Key first: a certificate never lies there without its key.
    await writeAtomic(files.caKeyFile, ca.keyPem, 0o600);
    await writeAtomic(files.caFile, ca.certPem, 0o644);
    created = true;
  }

  const server = await readPair(files.certFile, files.keyFile);
  if (created || !server || server === 'partial' || !serverCertFits(server, ca, hosts, now)) {
    const issued = issueServerCert(ca, hosts, now);
    await writeAtomic(files.keyFile, issued.keyPem, 0o600);
    await writeAtomic(files.certFile, issued.certPem, 0o644);
    created = true;
  }
  return { caFile: files.caFile, certFile: files.certFile, keyFile: files.keyFile, created };
}

interface Pair {
  certPem: string;
  keyPem: string;
}

/** Both files read; undefined when neither exists; 'partial' when only one does. */
async function readPair(certFile: string, keyFile: string): Promise<Pair | 'partial' | undefined> {
  const [certPem, keyPem] = await Promise.all([readOptional(certFile), readOptional(keyFile)]);
  if (certPem === undefined && keyPem === undefined) return undefined;
  if (certPem === undefined || keyPem === undefined) return 'partial';
  return { certPem, keyPem };
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new OspreyError('OSP_ERR_CONFIG', `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

/** Written beside, then renamed: a crash never leaves half a key; the mode is set before the rename. */
async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode); // the umask may have narrowed or widened nothing, but be exact
  await rename(tmp, file);
}

/** The server certificate is signed by this CA, matches its key, covers the hosts and is not about to expire. */
function serverCertFits(server: Pair, ca: Pair, hosts: string[], now: Date): boolean {
  try {
    const cert = new X509Certificate(server.certPem);
    const caCert = new X509Certificate(ca.certPem);
    if (!cert.verify(caCert.publicKey)) return false;
    if (!cert.checkPrivateKey(createPrivateKey(server.keyPem))) return false;
    if (new Date(cert.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return false;
    if (new Date(cert.validFrom).getTime() > now.getTime()) return false;
    return hosts.every((h) => (isIP(h) ? cert.checkIP(h) !== undefined : cert.checkHost(h) !== undefined));
  } catch {
    // Unreadable PEM: issue a new one rather than fail; the CA stays.
    return false;
  }
}

function rsaKeys(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; keyPem: string } {
  // node:crypto's native key generation: forge's pure-JS one takes seconds.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return {
    privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey,
    publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey,
    keyPem: privateKey,
  };
}

/** A positive serial of 16 random bytes (RFC 5280 4.1.2.2: at most 20 octets, positive). */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  // An hour back: an edge whose clock is a little behind still accepts a fresh certificate.
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}

function issueCa(now: Date): Pair {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, now, CA_VALIDITY_DAYS);
  const name = [
    { name: 'commonName', value: `Osprey fleet CA ${now.toISOString().slice(0, 10)}` },
    { name: 'organizationName', value: 'Osprey' },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.keyPem };
}

function issueServerCert(ca: Pair, hosts: string[], now: Date): Pair {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, now, SERVER_VALIDITY_DAYS);
  cert.setSubject([
    { name: 'commonName', value: hosts.find((h) => isIP(h) === 0 && h !== 'localhost') ?? hosts[0]! },
    { name: 'organizationName', value: 'Osprey' },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    // RFC 6125: clients match the subjectAltName, never the common name. Type 2 dNSName, 7 iPAddress.
    { name: 'subjectAltName', altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })) },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.keyPem };
}

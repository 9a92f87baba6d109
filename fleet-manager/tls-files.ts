/**
 * The fleet's TLS files (config `tls`), read and checked before anything listens: a missing file,
 * a PEM that does not parse or a key that is not the certificate's stops start-up with one line
 * naming the field and file (never the key's bytes).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { FleetTlsFiles } from './config.js';

export interface FleetTlsCredentials {
  cert: Buffer;
  key: Buffer;
  /** The CA the fleet's own MQTT client trusts; absent: the system's roots. */
  ca?: Buffer;
}

async function read(field: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `fleet config tls.${field}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

/** Reads certFile, keyFile and caFile; throws OSP_ERR_CONFIG unless they make a usable server context. */
export async function loadFleetTls(files: FleetTlsFiles): Promise<FleetTlsCredentials> {
  const cert = await read('certFile', files.certFile);
  const key = await read('keyFile', files.keyFile);
  const ca = files.caFile !== undefined ? await read('caFile', files.caFile) : undefined;
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `fleet config tls: ${files.certFile} with key ${files.keyFile} is not usable: ${oneLine(err)}`, { cause: err });
  }
  if (ca) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new OspreyError('OSP_ERR_CONFIG', `fleet config tls.caFile: ${files.caFile} is not a PEM certificate: ${oneLine(err)}`, { cause: err });
    }
  }
  return { cert, key, ...(ca ? { ca } : {}) };
}

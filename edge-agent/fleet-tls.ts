/**
 * How an edge checks that it talks to its fleet (docs/security-tls.md): with `fleet.caFile` the
 * fleet's MQTTS and HTTPS certificates must be signed by that CA and name the host the edge
 * dialled; anything else is refused before a byte of Osprey traffic is sent. One function turns
 * the config into the options of both clients, so MQTT, downloads and uploads trust the same CA.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { Agent } from 'undici';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { EdgeConfig } from './config.js';

/** mqtt.js connect options that pin the CA. */
export interface MqttTlsOptions {
  ca: Buffer;
  rejectUnauthorized: true;
  /** SNI and the name checked, for a DNS host (mqtt.js omits it for an IP, as RFC 6066 asks). */
  servername?: string;
}

export interface EdgeFleetTls {
  /** The CA file, named in refusals. */
  caFile: string;
  mqtt: MqttTlsOptions;
  /** undici dispatcher for artifact downloads and image uploads; the agent closes it. */
  dispatcher: Agent;
}

/** Reads `fleet.caFile` (undefined when unset); a missing or non-PEM file is OSP_ERR_CONFIG naming it. */
export async function loadEdgeFleetTls(config: Pick<EdgeConfig, 'fleet'>): Promise<EdgeFleetTls | undefined> {
  const fleet = config.fleet;
  if (fleet?.caFile === undefined) return undefined;
  let ca: Buffer;
  try {
    ca = await readFile(fleet.caFile);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `config fleet.caFile: cannot read ${fleet.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  try {
    new X509Certificate(ca);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `config fleet.caFile: ${fleet.caFile} is not a PEM certificate (${oneLine(err)})`, { cause: err });
  }
  const host = new URL(fleet.mqttUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    caFile: fleet.caFile,
    mqtt: { ca, rejectUnauthorized: true, ...(isIP(host) === 0 ? { servername: host } : {}) },
    // Only the CA is given: undici takes SNI and the name check from each request's URL.
    dispatcher: new Agent({ connect: { ca, rejectUnauthorized: true } }),
  };
}

/** OpenSSL and Node codes of a certificate the client refused. */
const CERT_REFUSALS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * One line saying why the fleet's certificate was refused, or undefined when `err` is not such a
 * refusal (the fleet is down, the network is cut...).
 */
export function certificateRefusal(err: unknown, caFile: string | undefined): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = oneLine(err);
  if (!(code !== undefined && CERT_REFUSALS.has(code)) && message !== 'TLS not authorized') return undefined;
  const trusted = caFile ? `fleet.caFile ${caFile}` : "the system's CAs (no fleet.caFile)";
  return `fleet certificate refused: ${message}${code ? ` (${code})` : ''}; trusted: ${trusted}`;
}

/** `osprey fleet tls-init`: a private CA and the fleet's server certificate (fleet-manager/private-ca.ts). */
import { join, resolve } from 'node:path';
import { ensurePrivateCa } from '../fleet-manager/private-ca.js';
import { FLEET_DEFAULTS } from '../fleet-manager/config.js';
import { parse } from './args.js';

export const tlsInitHelp = `Usage: osprey fleet tls-init [--data DIR] [--host H]...

Makes a private CA and a server certificate for the fleet's HTTPS and MQTTS listeners in
DIR/tls (ca.pem, ca.key, fleet.pem, fleet.key; keys 0600), then prints the "tls" section for
the fleet config and what each edge needs. Run again: existing files are kept; the server
certificate is issued again (same CA) when a new --host is asked for or it nears expiry.
See docs/security-tls.md.

Options:
  --data DIR     the fleet's data directory (default: ./${FLEET_DEFAULTS.dataDir})
  --host H       a DNS name or IP address edges use to reach the fleet; repeat for several
                 (localhost, 127.0.0.1 and ::1 are always included)
  -h, --help     this text`;

export async function tlsInitCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, host: { type: 'string', multiple: true } });
  if (values.help) {
    console.log(tlsInitHelp);
    return 0;
  }
  const dir = join(resolve(values.data ?? FLEET_DEFAULTS.dataDir), 'tls');
  const files = await ensurePrivateCa(dir, { hosts: values.host ?? [] });
  const snippet = { tls: { certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile } };
  console.log(`${files.created ? 'wrote' : 'kept'} the private CA and fleet certificate in ${dir}

Fleet config (only HTTPS and MQTTS listen with it):
${JSON.stringify(snippet, null, 2)}

Each edge: a copy of ${files.caFile} and, in its config,
  "fleet": { "mqttUrl": "mqtts://HOST:1883", "httpUrl": "https://HOST:8080", "caFile": "ca.pem", ... }
Keep ${join(dir, 'ca.key')} off the edges (better: off the fleet machine, once the certificate is issued).`);
  return 0;
}

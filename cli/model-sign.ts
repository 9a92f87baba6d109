/**
 * `osprey model keygen|sign`: the publisher's side of package signing. The private key stays
 * with the publisher (a release manager's machine or CI); the fleet and the edges hold only the
 * public key, under the key's id.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { generateSigningKeys, KEY_ID_PATTERN } from '../models/artifact-signature.js';
import { packArchive, unpackArchive } from '../models/package-archive.js';
import { readPackageDirectory, signPackageFiles, SIGNATURE_FILE, type PackageSignature } from '../models/package-signature.js';
import { OspreyError } from '../protocol/errors.js';
import { parse } from './args.js';

export const signHelp = `  osprey model keygen --out DIR --id ID [--force]
      A publisher key pair: DIR/ID.key (private, mode 0600: keep it off the fleet) and
      DIR/ID.pub (give it to the fleet's registry.publisherKeys and the edges' fleet.trustedKeys).

  osprey model sign --key KEY.pem --key-id ID PACKAGE_DIR|ARCHIVE.tar
      Signs the package (name, version, sha256 and size of its canonical archive, the plug-in's
      sha256): a directory gets DIR/signature.json, an archive gets signature.json added. Upload
      it as usual; the signature travels inside the upload.`;

async function keygen(argv: string[]): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' }, id: { type: 'string' }, force: { type: 'boolean' } });
  if (values.help) {
    console.log(signHelp);
    return 0;
  }
  if (!values.out || !values.id) throw new OspreyError('OSP_ERR_USAGE', 'model keygen needs --out DIR and --id ID');
  if (!new RegExp(KEY_ID_PATTERN).test(values.id)) throw new OspreyError('OSP_ERR_USAGE', `--id "${values.id}" must match ${KEY_ID_PATTERN}`);
  const dir = resolve(values.out);
  const keyFile = join(dir, `${values.id}.key`);
  const pubFile = join(dir, `${values.id}.pub`);
  if (!values.force && (await stat(keyFile).catch(() => null))) throw new OspreyError('OSP_ERR_USAGE', `${keyFile} exists; add --force to replace it`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keys = generateSigningKeys();
  await writeFile(keyFile, keys.privateKeyPem, { mode: 0o600 });
  await writeFile(pubFile, keys.publicKeyPem, { mode: 0o644 });
  console.log(JSON.stringify({ id: values.id, privateKeyFile: keyFile, publicKeyFile: pubFile }));
  return 0;
}

async function readPrivateKey(file: string) {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read --key ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`it is ${key.asymmetricKeyType}, not ed25519`);
    return key;
  } catch (err) {
    // Never the key's bytes in a message: only what is wrong with it.
    throw new OspreyError('OSP_ERR_USAGE', `--key ${file} is not an Ed25519 private key (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
}

/** Signs a package directory (writes DIR/signature.json) or archive (adds signature.json to it). */
export async function signPackage(path: string, keyId: string, privateKey: Parameters<typeof signPackageFiles>[2]): Promise<PackageSignature> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new OspreyError('OSP_ERR_USAGE', `${path} does not exist`);
  if (st.isDirectory()) {
    const sig = signPackageFiles(await readPackageDirectory(path), keyId, privateKey);
    await writeFile(join(path, SIGNATURE_FILE), `${JSON.stringify(sig, null, 2)}\n`);
    return sig;
  }
  const files = unpackArchive(await readFile(path));
  files.delete(SIGNATURE_FILE);
  const sig = signPackageFiles(files, keyId, privateKey);
  files.set(SIGNATURE_FILE, Buffer.from(`${JSON.stringify(sig, null, 2)}\n`));
  const tmp = `${path}.signing-${process.pid}`;
  await writeFile(tmp, packArchive(files));
  await rename(tmp, path);
  return sig;
}

async function sign(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { key: { type: 'string' }, 'key-id': { type: 'string' } }, true);
  if (values.help) {
    console.log(signHelp);
    return 0;
  }
  if (!values.key || !values['key-id']) throw new OspreyError('OSP_ERR_USAGE', 'model sign needs --key KEY.pem and --key-id ID');
  if (positionals.length !== 1) throw new OspreyError('OSP_ERR_USAGE', 'model sign needs exactly one PACKAGE_DIR or ARCHIVE');
  const key = await readPrivateKey(values.key);
  const sig = await signPackage(positionals[0]!, values['key-id'], key);
  const publicKey = createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
  const { signature: _signature, ...statement } = sig;
  console.log(JSON.stringify({ signed: positionals[0], ...statement, publicKey }));
  return 0;
}

export const signCommands = { keygen, sign };

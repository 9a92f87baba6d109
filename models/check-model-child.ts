/**
 * Child process of model-check.ts: proves one uploaded model runs (package.ts checkModelRuns).
 *
 *   node check-model-child.js FILE START SIZE      (the manifest's JSON on stdin)
 *
 * Runs apart from the fleet manager so that a model which crashes onnxruntime, hangs it or
 * allocates without bound costs this child, killed by the parent at its time and memory bound,
 * never the fleet. Exit 0: the model runs; else one line `CODE message` on stderr.
 */
import { open } from 'node:fs/promises';
import { parseManifest } from './manifest-check.js';
import { checkModelRuns } from './package.js';
import { runChild } from './child-main.js';

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

async function main(): Promise<void> {
  const [file, startText, sizeText] = process.argv.slice(2);
  const start = Number(startText);
  const size = Number(sizeText);
  if (!file || !Number.isSafeInteger(start) || !Number.isSafeInteger(size)) throw new Error('usage: check-model-child FILE START SIZE < manifest.json');
  const manifest = parseManifest(JSON.parse(await readStdin()), 'manifest.json');
  const bytes = new Uint8Array(size);
  const fh = await open(file, 'r');
  try {
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(bytes, off, size - off, start + off);
      if (bytesRead === 0) throw new Error(`${file} ends before byte ${start + size}`);
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
  await checkModelRuns(bytes, manifest);
}

runChild(main);

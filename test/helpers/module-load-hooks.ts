/**
 * Module loader hooks (node:module register) that append the URL of every module the ESM loader
 * loads to a file, one per line: the import graph a process really walked, dynamic imports and
 * CommonJS packages imported from ESM included. Registered by module-load-log.ts.
 */
import { appendFileSync } from 'node:fs';

let file = '';

export function initialize(data: { file: string }): void {
  file = data.file;
}

type NextLoad = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<unknown> {
  // Synchronous, so every line is on disk before the process can exit.
  appendFileSync(file, `${url}\n`);
  return nextLoad(url, context);
}

/** The real built-in ONNX model for edge-agent tests, built once per test file. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { ensureDemoModel } from '../../models/fixtures.js';

/**
 * Builds the built-in anomaly model package in a temp dir, removed after the test file. Call it
 * once at the top of a test file and share the promise between its tests.
 */
export function useDemoModel(): Promise<string> {
  const dir = mkdtemp(path.join(tmpdir(), 'osprey-model-'));
  after(async () => rm(await dir, { recursive: true, force: true }));
  return dir.then((d) => ensureDemoModel(d));
}

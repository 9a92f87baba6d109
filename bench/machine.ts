/** What the report says about the machine a run was measured on. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import os from 'node:os';
import { createRequire } from 'node:module';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  onnxruntime: string;
  sharp: string;
  sqlite: string;
  /** 1-minute load average when the run started (others' work on a shared machine). */
  loadAverage: number;
}

/** The installed version of a package, found from its entry point (some export no package.json). */
function packageVersion(name: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(name));
    for (let i = 0; i < 5; i++, dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? 'unknown';
      } catch {
        // no package.json at this level
      }
    }
  } catch {
    // not installed
  }
  return 'unknown';
}

/** CPU model, cores, memory, OS, and the versions of the runtimes that set the figures. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    onnxruntime: packageVersion('onnxruntime-node'),
    sharp: packageVersion('sharp'),
    sqlite: packageVersion('better-sqlite3'),
    loadAverage: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

/**
 * The baseline of the edge benchmark: what a careful user writes by hand with the same libraries
 * and no Osprey — sharp decodes and resizes (one pass, shrink-on-load), a loop normalises into a
 * float32 NCHW tensor, `session.run` infers. No header probe, no post-processing, no queue, no
 * HTTP, no result store. It reads the package's manifest only to know the model's input recipe.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { Manifest } from '../protocol/manifest.js';

/** onnxruntime threading, as tuned by the benchmark. */
export interface ThreadSettings {
  /** Intra-op threads of the session (the calling thread counts as one). */
  intraOp: number;
  /** Let idle intra-op threads spin-wait (onnxruntime's default) or sleep at once. */
  spinning: boolean;
}

export interface BareRunner {
  /** Decode, pre-process and infer one encoded image. */
  infer(image: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** onnxruntime session options for a thread setting (shared with the tuning sweep). */
export function sessionOptions(t: ThreadSettings): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: t.intraOp,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    // The Node binding flattens `extra` into session config entries (session.intra_op.allow_spinning).
    extra: { session: { intra_op: { allow_spinning: t.spinning ? '1' : '0' } } },
  };
}

/** Loads the package's model into a bare session. */
export async function createBareRunner(packageDir: string, threads: ThreadSettings): Promise<BareRunner> {
  const manifest = JSON.parse(await readFile(join(packageDir, 'manifest.json'), 'utf8')) as Manifest;
  const session = await ort.InferenceSession.create(await readFile(join(packageDir, manifest.model.file)), sessionOptions(threads));
  const inp = manifest.input;
  const W = inp.width;
  const H = inp.height;
  const gray = inp.color === 'gray';
  const C = gray ? 1 : 3;
  const scale = inp.scale ?? 1;
  const mean = inp.mean ?? [0];
  const std = inp.std ?? [1];
  const m = (c: number) => mean[mean.length === 1 ? 0 : c]!;
  const s = (c: number) => std[std.length === 1 ? 0 : c]!;
  const outputs = session.outputNames;

  async function pixels(image: Buffer): Promise<Buffer> {
    let img = sharp(image);
    if (inp.resize === 'letterbox') {
      const pad = inp.padValue ?? 114;
      img = img.resize(W, H, { fit: 'contain', background: { r: pad, g: pad, b: pad } });
    } else if (inp.resize === 'center-crop') {
      // Resize the shorter side to floor(W / cropFraction), then cut the centre W×H.
      const side = Math.floor(W / (inp.cropFraction ?? 1));
      img = img.resize(side, side, { fit: 'cover' });
      if (side !== W) img = img.extract({ left: Math.round((side - W) / 2), top: Math.round((side - H) / 2), width: W, height: H });
    } else {
      img = img.resize(W, H, { fit: 'fill' });
    }
    img = gray ? img.toColourspace('b-w') : img.removeAlpha();
    return img.raw().toBuffer();
  }

  function tensor(px: Buffer): ort.Tensor {
    const plane = W * H;
    const data = new Float32Array(C * plane);
    for (let c = 0; c < C; c++) {
      const a = scale / s(c);
      const b = m(c) / s(c);
      const o = c * plane;
      for (let i = 0; i < plane; i++) data[o + i] = px[i * C + c]! * a - b;
    }
    return new ort.Tensor('float32', data, [1, C, H, W]);
  }

  return {
    async infer(image) {
      const px = await pixels(image);
      await session.run({ [inp.name]: tensor(px) }, outputs);
    },
    close: () => session.release(),
  };
}

export interface LoopResult {
  frames: number;
  seconds: number;
  framesPerSecond: number;
  /** Per-frame wall time (ms), each frame from start to inference done. */
  latencies: number[];
  /** CPU seconds used by this process during the loop. */
  cpuSeconds: number;
}

/**
 * Runs `count` frames through `infer` with `concurrency` frames in flight (cycling through
 * `frames`), and measures throughput and per-frame latency.
 */
export async function runLoop(
  infer: (image: Buffer) => Promise<unknown>,
  frames: readonly Buffer[],
  count: number,
  concurrency: number,
): Promise<LoopResult> {
  let next = 0;
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  async function worker(): Promise<void> {
    while (next < count) {
      const i = next++;
      const start = performance.now();
      await infer(frames[i % frames.length]!);
      latencies.push(performance.now() - start);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { frames: count, seconds, framesPerSecond: count / seconds, latencies, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

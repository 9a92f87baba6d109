/**
 * What every task's post-processing implements: it names the outputs it needs and turns them
 * (as plain float arrays, independent of onnxruntime) into a verdict.
 */
import type { Inspection, InspectOptions } from '../types.js';
import type { Preprocessed } from '../preprocess.js';

/** One model output, converted to float32 whatever its ONNX type. */
export interface RawOutput {
  dims: readonly number[];
  data: Float32Array;
}

export type RawOutputs = Record<string, RawOutput>;

/** An inspection before timings are added. */
export type Judgement = Omit<Inspection, 'timings'>;

export interface OutputReader {
  /** Output names to fetch from the session, in no particular order. */
  readonly outputNames: readonly string[];
  /**
   * Reads the outputs of one frame. Throws OSP_ERR_MODEL_OUTPUT when they cannot be read for
   * the task (wrong shape or size), which the loader also hits on its warm-up run.
   */
  read(outputs: RawOutputs, options: InspectOptions, pre: Preprocessed): Promise<Judgement>;
  /**
   * Extra checks on the warm-up frame's outputs only: signs that the manifest misreads the model
   * (e.g. a softmax declared over outputs that are already probabilities) that would be too
   * costly or too bold to judge on every frame. Throws OSP_ERR_MODEL_OUTPUT.
   */
  verify?(outputs: RawOutputs): void;
}

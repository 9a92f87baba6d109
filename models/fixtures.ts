/**
 * models/ test and demo material: synthetic part images, the seeded PRNG and the demo model
 * package (the demo, the simulator, tests and benchmarks). Never imported by the daemons.
 */
export { generatePartImage, SYNTHETIC_DEFECTS, type SyntheticDefect, type DefectKind, type PartImageOptions } from './synthetic.js';
export { createRng, type Rng } from './prng.js';
export { ensureDemoModel, DEMO_MODEL_NAME, DEMO_TRAIN_SEEDS } from './demo-model.js';
export { tinyAnomalyModel } from './tiny-model.js';

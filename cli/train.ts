/** `osprey train anomaly|classify`: fit a model package on images (models/train/). */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { OspreyError } from '../protocol/errors.js';
import { intOption, parse } from './args.js';
import { BACKBONE_ARGS, BACKBONE_HELP, backboneChoice } from './train-backbone-options.js';

export const trainHelp = `Usage: osprey train anomaly --good DIR --out PKG [options]
       osprey train classify --data DIR --out PKG [options]

Fits a one-class anomaly model on images of good parts: a frozen ImageNet backbone (any ONNX
classifier, taps found in its graph or named) as feature extractor and a Gaussian over image
features, calibrated from the good images alone (leave-one-out scores). Writes an ordinary model package (manifest.json, ONE
model.onnx) and model-card.json beside it. Needs no GPU and no network.

Options:
  --good DIR              folder of good-part images (at least 3; a few hundred is best)
  --out PKG               package folder to write
  --backbone DIR|ONNX     backbone model (default $OSPREY_DATA/models/squeezenet-fp16)
  --defects DIR           defect images (and sub-folders): AUROC, false-reject and catch-rate
                          curve in the model card
  --validation-good DIR   held-out good images for those figures (default: leave-one-out scores)
  --operating-point P     balanced (p94 of leave-one-out scores, default), strict (p90),
                          lenient (p99), or pNN
  --search quick|full|off the automatic search over input size (224/160/128), taps and head
                          (quick, default; full: more sizes, taps and ridges), judged on held-out
                          good images against synthetic anomalies (or --defects); every trial
                          is in the model card and printed as a table
  --no-search             the fixed recipe (same as --search off)
  --head gaussian|nearest --ridge R  --size N
                          pin a choice (with --no-search: the recipe; default gaussian 0.01, the
                          backbone's size); --taps pins the layers
${BACKBONE_HELP}
  --name NAME             package name (default osprey-trained-anomaly)
  --version V             package version (default 1.0.0)
  --created-by WHO        who asked for it, model-card.json's createdBy (default local:$USER)
  --progress json         progress as JSON lines on stderr ({"phase","progress","line"}), for
                          the fleet's training jobs
  -h, --help              this text

osprey train classify: a classifier from one sub-folder of images per label (frozen backbone,
fire9 global-average-pooled, softmax regression; ONE graph ending in Gemm + Softmax). Every
label is a defect type unless --good-label names the good one.
  --data DIR              one sub-folder per label (at least 2)
  --out PKG               package folder to write
  --backbone DIR|ONNX     backbone model (default $OSPREY_DATA/models/squeezenet-fp16)
  --val-fraction F        share of each label held out for accuracy and confusion matrix in the
                          model card (deterministic, stratified; default 0.2, 0 = none)
  --good-label NAME       the label of good parts (not a defect)
  --search quick|full|off search over features (the classifier-level tap averaged, with the tap
                          before it, avg+max) and L2 on a split of the training part (default
                          quick); --no-search: the classifier-level tap averaged, L2 1e-3
  --taps, --input-norm, --color, --scale, --mean, --std   as for train anomaly
  --name NAME             package name (default osprey-trained-classifier)
  --version V             package version (default 1.0.0)`;

function defaultBackbone(given: string | undefined, command: string): string {
  const backbone = given ?? (process.env.OSPREY_DATA ? join(process.env.OSPREY_DATA, 'models', 'squeezenet-fp16') : undefined);
  if (!backbone) throw new OspreyError('OSP_ERR_USAGE', `train ${command} needs --backbone DIR|ONNX (or OSPREY_DATA set)`);
  return backbone;
}

/** The options both trainers take: the search, the backbone, naming, who and progress. */
const COMMON_ARGS = {
  search: { type: 'string' },
  'no-search': { type: 'boolean' },
  ...BACKBONE_ARGS,
  name: { type: 'string' },
  version: { type: 'string' },
  'created-by': { type: 'string' },
  progress: { type: 'string' },
} as const;

/** --search / --no-search: the mode (default quick). */
async function searchMode(values: { search?: string; 'no-search'?: boolean }) {
  const { parseSearchMode } = await import('../models/train/search.js');
  if (values['no-search'] && values.search && values.search !== 'off') throw new OspreyError('OSP_ERR_USAGE', `--no-search and --search ${values.search} contradict each other`);
  return values['no-search'] ? 'off' : values.search === undefined ? undefined : parseSearchMode(values.search);
}

/**
 * Where a trainer's log line puts the run: the phase it names and a rough 0..1 share (features
 * are most of the time; `features: i/n` lines come every 100 images from models/train/extract.ts).
 */
export function progressOf(line: string): { phase: string; progress: number } | undefined {
  const m = /^features(?: \d+px)?: (\d+)\/(\d+)/.exec(line);
  if (m) return { phase: 'features', progress: 0.05 + (0.75 * Number(m[1])) / Math.max(1, Number(m[2])) };
  if (/^features of \d+ images/.test(line)) return { phase: 'fitting', progress: 0.8 };
  if (/^fitted /.test(line)) return { phase: 'validating', progress: 0.9 };
  if (/^validation: /.test(line)) return { phase: 'validating', progress: 0.95 };
  return undefined;
}

/** The trainer's log: plain lines on stderr, or with `--progress json` one JSON object per line. */
function trainLog(mode: string | undefined): (line: string) => void {
  if (mode === undefined) return (line) => console.error(line);
  if (mode !== 'json') throw new OspreyError('OSP_ERR_USAGE', `--progress must be json, got ${mode}`);
  process.stderr.write(`${JSON.stringify({ phase: 'features', progress: 0.05, line: 'training started' })}\n`);
  return (line) => process.stderr.write(`${JSON.stringify({ ...progressOf(line), line })}\n`);
}

/** Who asked for the model: --created-by (the fleet passes user:NAME), else the local account. */
function createdBy(given: string | undefined): string {
  if (given !== undefined) return given;
  try {
    return `local:${userInfo().username}`;
  } catch {
    return 'local:unknown';
  }
}

function toolVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function trainAnomalyCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    good: { type: 'string' },
    out: { type: 'string' },
    backbone: { type: 'string' },
    defects: { type: 'string' },
    'validation-good': { type: 'string' },
    'operating-point': { type: 'string' },
    head: { type: 'string' },
    ridge: { type: 'string' },
    size: { type: 'string' },
    ...COMMON_ARGS,
  });
  if (values.help) {
    console.log(trainHelp);
    return 0;
  }
  if (!values.good) throw new OspreyError('OSP_ERR_USAGE', 'train anomaly needs --good DIR');
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'train anomaly needs --out PKG');
  const backbone = defaultBackbone(values.backbone, 'anomaly');
  const log = trainLog(values.progress);
  // Loaded here: onnx-proto and onnxruntime are not paid for by `osprey train --help`.
  const { trainAnomaly } = await import('../models/train/train-anomaly.js');
  const { parseOperatingPoint } = await import('../models/train/calibration.js');
  const { describeAnomalyChoice, searchTable } = await import('../models/train/search.js');
  const search = await searchMode(values);
  if (values.head !== undefined && values.head !== 'gaussian' && values.head !== 'nearest') throw new OspreyError('OSP_ERR_USAGE', `--head must be gaussian or nearest, got "${values.head}"`);
  const ridge = values.ridge === undefined ? undefined : Number(values.ridge);
  if (ridge !== undefined && !(ridge > 0)) throw new OspreyError('OSP_ERR_USAGE', `--ridge must be a positive number, got "${values.ridge}"`);
  const { card, search: report } = await trainAnomaly({
    good: values.good,
    out: values.out,
    backbone,
    defects: values.defects,
    validationGood: values['validation-good'],
    operatingPoint: values['operating-point'] ? parseOperatingPoint(values['operating-point']) : undefined,
    createdBy: createdBy(values['created-by']),
    search,
    head: values.head as 'gaussian' | 'nearest' | undefined,
    ridge,
    size: values.size === undefined ? undefined : intOption('size', values.size, 224, 64, 1024),
    backboneChoice: backboneChoice(values),
    name: values.name,
    version: values.version,
    toolVersion: toolVersion(),
    log,
  });
  if (report) console.error(searchTable(report, describeAnomalyChoice, 'AUROC'));
  console.log(JSON.stringify({ out: values.out, search: (card.search as { chosen: unknown }).chosen, operatingPoint: card.operatingPoint, validation: card.validation, timing: card.timing }));
  return 0;
}

async function trainClassifyCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    data: { type: 'string' },
    out: { type: 'string' },
    backbone: { type: 'string' },
    'val-fraction': { type: 'string' },
    'good-label': { type: 'string' },
    ...COMMON_ARGS,
  });
  if (values.help) {
    console.log(trainHelp);
    return 0;
  }
  if (!values.data) throw new OspreyError('OSP_ERR_USAGE', 'train classify needs --data DIR');
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'train classify needs --out PKG');
  const fraction = values['val-fraction'] === undefined ? undefined : Number(values['val-fraction']);
  if (fraction !== undefined && !(fraction >= 0 && fraction < 1)) throw new OspreyError('OSP_ERR_USAGE', `--val-fraction must be a number in [0, 1), got ${values['val-fraction']}`);
  const backbone = defaultBackbone(values.backbone, 'classify');
  const log = trainLog(values.progress);
  const { trainClassify } = await import('../models/train/train-classify.js');
  const { describeClassifyChoice, searchTable } = await import('../models/train/search.js');
  const search = await searchMode(values);
  const { card, search: report } = await trainClassify({
    data: values.data,
    out: values.out,
    backbone,
    valFraction: fraction,
    goodLabel: values['good-label'],
    createdBy: createdBy(values['created-by']),
    search,
    backboneChoice: backboneChoice(values),
    name: values.name,
    version: values.version,
    toolVersion: toolVersion(),
    log,
  });
  if (report) console.error(searchTable(report, describeClassifyChoice, 'accuracy'));
  console.log(JSON.stringify({ out: values.out, search: (card.search as { chosen: unknown }).chosen, validation: card.validation, timing: card.timing }));
  return 0;
}

export const trainCommands = { anomaly: trainAnomalyCommand, classify: trainClassifyCommand };

/** `osprey train anomaly|classify`: fit a model package on images (models/train/). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OspreyError } from '../protocol/errors.js';
import { intOption, parse } from './args.js';

export const trainHelp = `Usage: osprey train anomaly --good DIR --out PKG [options]
       osprey train classify --data DIR --out PKG [options]

Fits a one-class anomaly model on images of good parts: a frozen ImageNet backbone (SqueezeNet
1.1 layout) as feature extractor and a Gaussian over image features, calibrated from the good
images alone (leave-one-out scores). Writes an ordinary model package (manifest.json, ONE
model.onnx) and model-card.json beside it. Needs no GPU and no network.

Options:
  --good DIR              folder of good-part images (at least 3; a few hundred is best)
  --out PKG               package folder to write
  --backbone DIR|ONNX     backbone model (default $OSPREY_DATA/models/squeezenet-fp16)
  --defects DIR           defect images (and sub-folders): AUROC, false-reject and catch-rate
                          curve in the model card
  --validation-good DIR   held-out good images for those figures (default: leave-one-out scores)
  --operating-point P     balanced (p95 of leave-one-out scores, default), strict (p90),
                          lenient (p99), or pNN
  --search quick|full|off the automatic search over input size (224/160/128), taps and head
                          (quick, default; full: more sizes, taps and ridges), judged on held-out
                          good images against synthetic anomalies (or --defects); every trial
                          is in the model card and printed as a table
  --no-search             the fixed recipe (same as --search off)
  --head gaussian|nearest --ridge R  --layers fire3,fire5,fire7  --size N
                          pin a choice (with --no-search: the recipe; default gaussian 0.01,
                          fire3,fire5,fire7, 224)
  --name NAME             package name (default osprey-trained-anomaly)
  --version V             package version (default 1.0.0)
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
  --search quick|full|off search over features (fire9 avg, avg+max, fire7+fire9) and L2 on a
                          split of the training part (default quick); --no-search: fire9 avg, 1e-3
  --name NAME             package name (default osprey-trained-classifier)
  --version V             package version (default 1.0.0)`;

function defaultBackbone(given: string | undefined, command: string): string {
  const backbone = given ?? (process.env.OSPREY_DATA ? join(process.env.OSPREY_DATA, 'models', 'squeezenet-fp16') : undefined);
  if (!backbone) throw new OspreyError('OSP_ERR_USAGE', `train ${command} needs --backbone DIR|ONNX (or OSPREY_DATA set)`);
  return backbone;
}

/** --search / --no-search: the mode (default quick). */
async function searchMode(values: { search?: string; 'no-search'?: boolean }) {
  const { parseSearchMode } = await import('../models/train/search.js');
  if (values['no-search'] && values.search && values.search !== 'off') throw new OspreyError('OSP_ERR_USAGE', `--no-search and --search ${values.search} contradict each other`);
  return values['no-search'] ? 'off' : values.search === undefined ? undefined : parseSearchMode(values.search);
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
    search: { type: 'string' },
    'no-search': { type: 'boolean' },
    head: { type: 'string' },
    ridge: { type: 'string' },
    layers: { type: 'string' },
    size: { type: 'string' },
    name: { type: 'string' },
    version: { type: 'string' },
  });
  if (values.help) {
    console.log(trainHelp);
    return 0;
  }
  if (!values.good) throw new OspreyError('OSP_ERR_USAGE', 'train anomaly needs --good DIR');
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'train anomaly needs --out PKG');
  const backbone = defaultBackbone(values.backbone, 'anomaly');
  // Loaded here: onnx-proto and onnxruntime are not paid for by `osprey train --help`.
  const { trainAnomaly } = await import('../models/train/train-anomaly.js');
  const { parseOperatingPoint } = await import('../models/train/calibration.js');
  const { describeAnomalyChoice, searchTable, squeezenetTap } = await import('../models/train/search.js');
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
    search,
    head: values.head as 'gaussian' | 'nearest' | undefined,
    ridge,
    layers: values.layers?.split(',').map(squeezenetTap),
    size: values.size === undefined ? undefined : intOption('size', values.size, 224, 64, 1024),
    name: values.name,
    version: values.version,
    toolVersion: toolVersion(),
    log: (line) => console.error(line),
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
    search: { type: 'string' },
    'no-search': { type: 'boolean' },
    name: { type: 'string' },
    version: { type: 'string' },
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
  const { trainClassify } = await import('../models/train/train-classify.js');
  const { describeClassifyChoice, searchTable } = await import('../models/train/search.js');
  const search = await searchMode(values);
  const { card, search: report } = await trainClassify({
    data: values.data,
    out: values.out,
    backbone,
    valFraction: fraction,
    goodLabel: values['good-label'],
    search,
    name: values.name,
    version: values.version,
    toolVersion: toolVersion(),
    log: (line) => console.error(line),
  });
  if (report) console.error(searchTable(report, describeClassifyChoice, 'accuracy'));
  console.log(JSON.stringify({ out: values.out, search: (card.search as { chosen: unknown }).chosen, validation: card.validation, timing: card.timing }));
  return 0;
}

export const trainCommands = { anomaly: trainAnomalyCommand, classify: trainClassifyCommand };

/**
 * Which threshold applies to a label. Per-edge overrides (InspectOptions.thresholds) win over the
 * package, and within each layer a per-label value wins over the default.
 */
import type { Thresholds } from '../../protocol/messages.js';
import type { Manifest } from '../../protocol/manifest.js';

/**
 * The threshold for `label`: override.perLabel[label], else override.default, else
 * manifest.perLabel[label], else manifest.default.
 */
export function resolveThreshold(label: string, manifest: Manifest['thresholds'], override?: Thresholds): number {
  return override?.perLabel?.[label] ?? override?.default ?? manifest.perLabel?.[label] ?? manifest.default;
}

/** True when `label` has a per-label threshold in either layer (it is then judged on its own). */
export function hasOwnThreshold(label: string, manifest: Manifest['thresholds'], override?: Thresholds): boolean {
  if (override?.perLabel?.[label] !== undefined) return true;
  // An edge-wide default override replaces the package's per-label values too (see resolveThreshold).
  if (override?.default !== undefined) return false;
  return manifest.perLabel?.[label] !== undefined;
}

/** The default threshold after overrides. */
export function defaultThreshold(manifest: Manifest['thresholds'], override?: Thresholds): number {
  return override?.default ?? manifest.default;
}

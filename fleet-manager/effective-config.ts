/**
 * Configuration layering fleet → line → edge. A later layer wins field by field:
 * `thresholds.default` and each `sampling` field are replaced, `thresholds.perLabel` is merged
 * label by label (an edge can raise one label's threshold and keep the line's others).
 */
import type { EdgeSettings } from '../protocol/messages.js';

/** Merges layers in order (most general first); undefined layers are skipped. */
export function mergeSettings(...layers: (EdgeSettings | null | undefined)[]): EdgeSettings {
  const out: EdgeSettings = {};
  for (const layer of layers) {
    if (!layer) continue;
    if (layer.thresholds) {
      const t = { ...out.thresholds };
      if (layer.thresholds.default !== undefined) t.default = layer.thresholds.default;
      if (layer.thresholds.perLabel) t.perLabel = { ...t.perLabel, ...layer.thresholds.perLabel };
      out.thresholds = t;
    }
    if (layer.sampling) out.sampling = { ...out.sampling, ...layer.sampling };
  }
  return out;
}

/**
 * JSON with object keys sorted at every level, so two equal configs compare equal as strings
 * whatever order their keys were written in.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

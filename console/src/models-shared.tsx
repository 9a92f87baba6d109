/**
 * What the Models screen's parts share: the API's shapes as the console reads them, permission
 * checks, how figures and signatures are written, and the one-line refusal.
 */
import type { SessionInfo } from './api.js';
import { num } from './format.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- model cards are free-form JSON, read defensively
export type Json = Record<string, any>;
export interface ModelSummary { name: string; versions: number; latestVersion: string; updatedAt: number }
export interface VersionView { name: string; version: string; sha256: string; size: number; keyId: string; task: string; createdAt: number; uploadedBy: string | null; trainedBy: string | null; manifest: Json }
export interface Job { id: string; kind: string; model: string; version: string | null; backbone: string; state: string; phase: string; progress: number; counts: Record<string, number>; error: string | null; createdBy: string; createdAt: number; resultVersion: string | null }

export const can = (s: SessionInfo, p: string) => (s.permissions as readonly string[]).includes(p);
export const pct = (v: unknown) => (typeof v === 'number' ? `${num(v * 100)} %` : '–');
export const enc = encodeURIComponent;

/** Who vouches for a version: its publisher's key, or the fleet's own for what the fleet made. */
export function signatureText(v: Pick<VersionView, 'keyId' | 'trainedBy'>): string {
  if (v.keyId !== 'fleet') return `publisher ${v.keyId}`;
  if (v.trainedBy?.startsWith('training-job:')) return 'fleet key (trained here)';
  if (v.trainedBy?.startsWith('fleet-pack:')) return 'fleet key (packed here)';
  return 'fleet key (unsigned upload)';
}

/** A refusal or a failure as one line. */
export function Problem({ text }: { text: string | null }) {
  return text ? (
    <p class="error" role="alert">
      {text}
    </p>
  ) : null;
}

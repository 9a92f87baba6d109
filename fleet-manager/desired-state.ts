/**
 * Desired-state publisher: per edge, the artifact it should run (its pin), the shadow candidate
 * of a rollout, and the effective config (fleet → line → edge) with a per-edge config version.
 * Each desired state is stored, then published retained at QoS 1 on `edges/{id}/desired`; it is
 * published again only when it changes (or on `force`, after a broker restart).
 */
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { edgeTopic } from '../protocol/topics.js';
import { encodeMessage, envelope } from '../protocol/validator.js';
import type { EdgeSettings, ModelArtifact } from '../protocol/messages.js';
import type { FleetStore } from './store.js';
import type { ConfigLayer, ControlStore, DesiredBody, DesiredRecord, ModelVersionRecord } from './control-store.js';
import type { Registry } from './registry.js';
import { canonicalJson, mergeSettings } from './effective-config.js';

export interface DesiredPublisherOptions {
  client: MqttClient;
  store: ControlStore;
  fleet: FleetStore;
  registry: Registry;
  logger: Logger;
  /**
   * Base URL of artifact downloads (the fleet's public HTTP address), read at each publish: the
   * listen port is known only once the HTTP server is up. Default http://127.0.0.1.
   */
  baseUrl?: () => string;
  /** Who decides each edge's shadow candidate (the rollouts' membership); returns an artifact sha256. */
  shadowOf?: (edgeId: string) => string | null;
  now?: () => number;
}

export interface EffectiveConfig {
  edgeId: string;
  line: string | null;
  config: EdgeSettings;
  layers: { fleet: ConfigLayer | null; line: ConfigLayer | null; edge: ConfigLayer | null };
}

export interface RefreshOutcome {
  /** Edges whose desired state changed and was published. */
  published: string[];
  /** Settles when the broker has taken every publish (PUBACK); never rejects. */
  delivered: Promise<void>;
}

export interface DesiredPublisher {
  /**
   * Recomputes the desired state of these edges and publishes the ones that changed (all of them
   * with `force`). Serialised: concurrent calls run one after the other.
   */
  refresh(edgeIds: readonly string[], opts?: { force?: boolean }): Promise<RefreshOutcome>;
  /** refresh() over every edge the fleet knows, has a desired state for, or has a pin for. */
  refreshAll(opts?: { force?: boolean }): Promise<RefreshOutcome>;
  effectiveConfig(edgeId: string): Promise<EffectiveConfig>;
}

/** Creates the publisher; nothing is published until refresh is called. */
export function createDesiredPublisher(opts: DesiredPublisherOptions): DesiredPublisher {
  const { client, store, fleet } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const baseUrl = () => (opts.baseUrl?.() || 'http://127.0.0.1').replace(/\/+$/, '');
  const shadowOf = opts.shadowOf ?? (() => null);
  // Versions are immutable, so their records can be cached for the life of the process.
  const versions = new Map<string, ModelVersionRecord>();
  let tail: Promise<unknown> = Promise.resolve();

  async function artifactOf(sha256: string | null): Promise<ModelArtifact | null> {
    if (!sha256) return null;
    let rec = versions.get(sha256);
    if (!rec) {
      const found = await store.getVersionBySha(sha256);
      if (!found) {
        // A pin to a version that is gone cannot be delivered; the edge keeps what it runs.
        log.error({ sha256 }, 'pinned artifact not in the registry');
        return null;
      }
      rec = found;
      versions.set(sha256, rec);
    }
    return opts.registry.artifact(rec, baseUrl());
  }

  async function linesOf(ids: readonly string[]): Promise<Map<string, string | null>> {
    const lines = new Map<string, string | null>(ids.map((id) => [id, null]));
    // A few edges (a state arriving): one lookup each; many (a rollback): one listing.
    if (ids.length <= 32) for (const id of ids) lines.set(id, (await fleet.getEdge(id))?.line ?? null);
    else for (const e of await fleet.listEdges()) if (lines.has(e.id)) lines.set(e.id, e.line);
    return lines;
  }

  async function effective(edgeId: string, line: string | null, cache: Map<string, ConfigLayer | null>): Promise<EffectiveConfig> {
    const layer = async (scope: 'fleet' | 'line' | 'edge', key: string) => {
      const k = `${scope}\0${key}`;
      if (!cache.has(k)) cache.set(k, await store.getConfigLayer(scope, key));
      return cache.get(k)!;
    };
    const layers = {
      fleet: await layer('fleet', ''),
      line: line === null ? null : await layer('line', line),
      edge: await layer('edge', edgeId),
    };
    return { edgeId, line, config: mergeSettings(layers.fleet?.settings, layers.line?.settings, layers.edge?.settings), layers };
  }

  async function run(edgeIds: readonly string[], force: boolean): Promise<RefreshOutcome> {
    const ids = [...new Set(edgeIds)];
    const lines = await linesOf(ids);
    const cache = new Map<string, ConfigLayer | null>();
    const changed: DesiredRecord[] = [];
    for (const edgeId of ids) {
      const prev = await store.getDesired(edgeId);
      const { config } = await effective(edgeId, lines.get(edgeId) ?? null, cache);
      const configJson = canonicalJson(config);
      // The version counts config changes only; a model change alone keeps it.
      const configVersion = !prev ? 1 : prev.configJson === configJson ? prev.body.configVersion : prev.body.configVersion + 1;
      const pin = await store.getPin(edgeId);
      const shadowSha = shadowOf(edgeId);
      const body: DesiredBody = {
        active: await artifactOf(pin?.active ?? null),
        shadow: shadowSha && shadowSha !== pin?.active ? await artifactOf(shadowSha) : null,
        config,
        configVersion,
      };
      if (!force && prev && canonicalJson(prev.body) === canonicalJson(body)) continue;
      changed.push({ edgeId, body, configJson, updatedAt: now() });
    }
    // Stored before published: a desired state an edge acts on is always one the fleet remembers.
    if (changed.length > 0) await store.putDesired(changed);
    const acks: Promise<void>[] = [];
    for (const { edgeId, body } of changed) {
      const msg = envelope('desired', edgeId, body, now());
      acks.push(
        client.publishAsync(edgeTopic(edgeId, 'desired'), encodeMessage(msg), { qos: 1, retain: true }).then(
          () => undefined,
          (err: unknown) => log.warn({ err, edgeId }, 'desired state not published'),
        ),
      );
      log.info(
        {
          edgeId,
          active: body.active ? `${body.active.name}@${body.active.version}` : null,
          shadow: body.shadow ? `${body.shadow.name}@${body.shadow.version}` : null,
          configVersion: body.configVersion,
        },
        'desired state published',
      );
    }
    return { published: changed.map((c) => c.edgeId), delivered: Promise.all(acks).then(() => undefined) };
  }

  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = tail.then(fn);
    tail = result.catch(() => undefined);
    return result;
  }

  return {
    refresh(edgeIds, o = {}) {
      return serial(() => run(edgeIds, o.force ?? false));
    },
    refreshAll(o = {}) {
      return serial(async () => {
        const ids = new Set<string>();
        for (const e of await fleet.listEdges()) ids.add(e.id);
        for (const d of await store.listDesired()) ids.add(d.edgeId);
        for (const p of await store.listPins()) ids.add(p.edgeId);
        return run([...ids].sort(), o.force ?? false);
      });
    },
    async effectiveConfig(edgeId) {
      const lines = await linesOf([edgeId]);
      return effective(edgeId, lines.get(edgeId) ?? null, new Map());
    },
  };
}

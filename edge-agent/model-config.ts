/**
 * The config half of the desired state: thresholds into the pipeline's slots, the rest (image
 * sampling) to the caller, once per change of the fleet's effective config.
 */
import type { Logger } from 'pino';
import type { DesiredMessage, EdgeSettings, Thresholds } from '../protocol/messages.js';
import type { ModelEventSink } from './model-fetch.js';

export interface ConfigApplierOptions {
  setThresholds(thresholds: Thresholds | undefined): void;
  /** Thresholds from the edge's own config, used while the desired config has none. */
  localThresholds?: Thresholds;
  logger: Logger;
  emit: ModelEventSink;
  /** A desired config was applied (thresholds are already set; sampling is for the caller). */
  onConfigApplied?: (settings: EdgeSettings, configVersion: number) => void;
}

export interface ConfigApplier {
  /** Applies the desired config when it differs from the one in force; `quiet`: no event (a restore). */
  apply(desired: DesiredMessage, quiet?: boolean): void;
  /** The config version in force (undefined until one was applied). */
  readonly version: number | undefined;
  readonly settings: EdgeSettings | undefined;
}

/** Creates the applier; nothing is applied until apply(). */
export function createConfigApplier(opts: ConfigApplierOptions): ConfigApplier {
  const log = opts.logger;
  let version: number | undefined;
  let settings: EdgeSettings | undefined;
  return {
    apply(d, quiet = false) {
      const changed = d.configVersion !== version || JSON.stringify(d.config) !== JSON.stringify(settings);
      if (!changed) return;
      // The fleet's effective config replaces the file's thresholds when it has any.
      const thresholds = d.config.thresholds ?? opts.localThresholds;
      opts.setThresholds(thresholds);
      version = d.configVersion;
      settings = d.config;
      log.info({ configVersion: d.configVersion }, 'config applied');
      if (!quiet) opts.emit('config-applied', 'info', `config version ${d.configVersion} applied`, { configVersion: d.configVersion, thresholds: thresholds ?? null });
      try {
        opts.onConfigApplied?.(d.config, d.configVersion);
      } catch (err) {
        log.error({ err }, 'config hook threw');
      }
    },
    get version() {
      return version;
    },
    get settings() {
      return settings;
    },
  };
}

/** `osprey fleet start` and `osprey edge start`: the two daemons, stopped by SIGINT/SIGTERM. */
import pino from 'pino';
import { createEdgeAgent } from '../edge-agent/edge-agent.js';
import { loadEdgeConfig } from '../edge-agent/config.js';
import { createFleetManager } from '../fleet-manager/fleet-manager.js';
import { loadFleetConfig, storageUrlFromEnv } from '../fleet-manager/config.js';
import { OspreyError } from '../protocol/errors.js';
import { intOption, parse } from './args.js';
import { onShutdownSignal } from './signals.js';

export const fleetHelp = `Usage: osprey fleet start [options]

Runs the fleet manager: HTTP API and console, an embedded MQTT broker (aedes) unless --broker
names another, and SQLite under the data directory. Logs are JSON lines (pino) on stdout.

Options:
  --config FILE     fleet configuration (JSON); see docs/CONFIG.md
  --port N          HTTP port (overrides the config; 0 picks a free one)
  --mqtt-port N     embedded broker port (overrides the config; 0 picks a free one)
  --broker URL      use this MQTT broker (mqtt://host:port) instead of embedding one
  --data DIR        data directory (overrides the config)
  --publisher-key ID=FILE   trust uploads signed by this publisher key (osprey model keygen);
                    added to registry.publisherKeys, repeatable
  -h, --help        this text`;

export const edgeHelp = `Usage: osprey edge start --config FILE

Runs an edge agent with the given configuration (JSON; see docs/CONFIG.md). Logs are JSON
lines (pino) on stdout. SIGINT/SIGTERM drain the queue and stop cleanly.

Options:
  --config FILE     edge configuration (required)
  -h, --help        this text`;

/** `ID=FILE` → { id, publicKeyFile }. */
function publisherKeyOption(value: string): { id: string; publicKeyFile: string } {
  const m = /^([^=]+)=(.+)$/.exec(value);
  if (!m) throw new OspreyError('OSP_ERR_USAGE', `--publisher-key needs ID=FILE, got "${value}"`);
  return { id: m[1]!, publicKeyFile: m[2]! };
}

export async function fleetCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    port: { type: 'string' },
    'mqtt-port': { type: 'string' },
    broker: { type: 'string' },
    data: { type: 'string' },
    'publisher-key': { type: 'string', multiple: true },
  });
  if (values.help) {
    console.log(fleetHelp);
    return 0;
  }
  const config = await loadFleetConfig(values.config, {
    ...(values.port !== undefined && { httpPort: intOption('port', values.port, 0, 0, 65535) }),
    ...(values['mqtt-port'] !== undefined && { mqttPort: intOption('mqtt-port', values['mqtt-port'], 0, 0, 65535) }),
    ...(values.broker !== undefined && { brokerUrl: values.broker }),
    ...(values.data !== undefined && { dataDir: values.data }),
    ...(storageUrlFromEnv() !== undefined && { storageUrl: storageUrlFromEnv() }),
    ...(values['publisher-key'] && { publisherKeys: values['publisher-key'].map(publisherKeyOption) }),
  });
  const logger = pino({ level: config.logLevel ?? 'info' });
  const fleet = createFleetManager({ ...config, logger });
  const urls = await fleet.start();
  logger.info(urls, 'fleet manager started');
  const signal = await onShutdownSignal();
  logger.info({ signal }, 'fleet manager stopping');
  await fleet.close();
  return 0;
}

export async function edgeCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  if (values.help) {
    console.log(edgeHelp);
    return 0;
  }
  if (!values.config) throw new OspreyError('OSP_ERR_USAGE', 'edge start needs --config FILE');
  const config = await loadEdgeConfig(values.config);
  const logger = pino({ level: config.logLevel ?? 'info' }).child({ edgeId: config.edgeId });
  const agent = createEdgeAgent(config, { logger });
  const started = await agent.start();
  logger.info(started, 'edge agent started');
  const signal = await onShutdownSignal();
  logger.info({ signal }, 'edge agent stopping');
  await agent.close();
  return 0;
}

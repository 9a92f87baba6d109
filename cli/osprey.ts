/**
 * The `osprey` command. Each subcommand prints --help, exits 0 on success and prints a one-line
 * error with a non-zero exit on bad input (DESIGN.md "Command line").
 */
import { OspreyError, oneLine } from '../protocol/errors.js';

const usage = `Usage: osprey <command> [options]

Commands:
  demo                      fleet manager + edges + generated frames on this machine
  fleet start [--config F]  run the fleet manager
  fleet init [--admin NAME] the data directory and the first admin (password printed once)
  fleet tls-init [--host H] a private CA and the fleet's TLS certificate
  fleet broker-config       Mosquitto password, ACL and config files for the enrolled edges
  user add|passwd|list|disable|enable|token   people and API tokens of a fleet
  edge start --config F     run an edge agent
  edge token --edge-id ID   a one-time enrollment token (on the fleet host)
  edge enroll --fleet URL --token T --edge-id ID  get this edge's credential
  infer --model DIR IMG...  run a model package on images, one JSON line each
  model inspect|pack|validate|keygen|sign  turn an exported ONNX file into a signed model package
  simulate --edges N        many simulated edges against a fleet manager (load test)
  sample image|model        a synthetic part image, the built-in model package
  train anomaly --good DIR --out PKG  a one-class model from images of good parts

Run "osprey <command> --help" for the options of one command.`;

type Command = (argv: string[]) => Promise<number>;

/** A command group (`osprey fleet start`): its help text and verbs. */
function sub(name: string, help: string, verbs: Record<string, Command>): Command {
  return async (argv) => {
    const [verb, ...rest] = argv;
    if (verb === undefined || verb === '--help' || verb === '-h') {
      console.log(help);
      return verb === undefined ? 2 : 0;
    }
    const cmd = verbs[verb];
    if (!cmd) throw new OspreyError('OSP_ERR_USAGE', `unknown command "${name} ${verb}"; try "osprey ${name} --help"`);
    return cmd(rest);
  };
}

// Loaded on demand: `osprey infer` need not pay for fastify, aedes and SQLite at start-up.
const commands: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./demo.js')).demoCommand,
  fleet: async () => {
    const m = await import('./daemons.js');
    const init = (await import('./fleet-init.js')).fleetInitCommand;
    return sub('fleet', m.fleetHelp, {
      start: m.fleetCommand,
      init,
      'tls-init': async (argv) => (await import('./fleet-tls.js')).tlsInitCommand(argv),
      'broker-config': async (argv) => (await import('./broker-config.js')).brokerConfigCommand(argv),
    });
  },
  edge: async () => {
    const m = await import('./daemons.js');
    const enroll = await import('./edge-enroll.js');
    const token = await import('./edge-token.js');
    return sub('edge', `${m.edgeHelp}\n\n${enroll.edgeEnrollHelp}\n\n${token.edgeTokenHelp}`, { start: m.edgeCommand, enroll: enroll.edgeEnrollCommand, token: token.edgeTokenCommand });
  },
  user: async () => {
    const m = await import('./user.js');
    return sub('user', m.userHelp, m.userCommands);
  },
  infer: async () => (await import('./infer.js')).inferCommand,
  simulate: async () => (await import('./simulate.js')).simulateCommand,
  model: async () => {
    const m = await import('./model.js');
    return sub('model', m.modelHelp, m.modelCommands);
  },
  sample: async () => {
    const m = await import('./sample.js');
    return sub('sample', m.sampleHelp, m.sampleCommands);
  },
  train: async () => {
    const m = await import('./train.js');
    return sub('train', m.trainHelp, m.trainCommands);
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (!cmd) throw new OspreyError('OSP_ERR_USAGE', `unknown command "${name}"; try "osprey --help"`);
  return (await cmd())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = err instanceof OspreyError ? err.code : undefined;
    console.error(`osprey: ${oneLine(err)}${code && code !== 'OSP_ERR_USAGE' ? ` [${code}]` : ''}`);
    if (!(err instanceof OspreyError) && process.env.OSPREY_DEBUG) console.error(err);
    process.exitCode = 1;
  },
);

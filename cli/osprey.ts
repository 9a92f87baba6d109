/**
 * The `osprey` command. Each subcommand prints --help, exits 0 on success and prints a one-line
 * error with a non-zero exit on bad input (DESIGN.md "Command line").
 */
import { OspreyError, oneLine } from '../protocol/errors.js';
import { demoCommand } from './demo.js';
import { edgeCommand, edgeHelp, fleetCommand, fleetHelp } from './daemons.js';
import { inferCommand } from './infer.js';
import { modelCommands, modelHelp } from './model.js';

const usage = `Usage: osprey <command> [options]

Commands:
  demo                      fleet manager + edges + generated frames on this machine
  fleet start [--config F]  run the fleet manager
  edge start --config F     run an edge agent
  infer --model DIR IMG...  run a model package on images, one JSON line each
  model inspect|pack|validate  turn an exported ONNX file into a model package

Run "osprey <command> --help" for the options of one command.`;

type Command = (argv: string[]) => Promise<number>;

function sub(name: string, help: string, commands: Record<string, Command>): Command {
  return async (argv) => {
    const [verb, ...rest] = argv;
    if (verb === undefined || verb === '--help' || verb === '-h') {
      console.log(help);
      return verb === undefined ? 2 : 0;
    }
    const cmd = commands[verb];
    if (!cmd) throw new OspreyError('OSP_ERR_USAGE', `unknown command "${name} ${verb}"; try "osprey ${name} --help"`);
    return cmd(rest);
  };
}

const commands: Record<string, Command> = {
  demo: demoCommand,
  fleet: sub('fleet', fleetHelp, { start: fleetCommand }),
  edge: sub('edge', edgeHelp, { start: edgeCommand }),
  infer: inferCommand,
  model: sub('model', modelHelp, modelCommands),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (!cmd) throw new OspreyError('OSP_ERR_USAGE', `unknown command "${name}"; try "osprey --help"`);
  return cmd(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Daemons keep running until a signal; one-shot commands end here.
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    const code = err instanceof OspreyError ? err.code : undefined;
    console.error(`osprey: ${oneLine(err)}${code && code !== 'OSP_ERR_USAGE' ? ` [${code}]` : ''}`);
    if (!(err instanceof OspreyError) && process.env.OSPREY_DEBUG) console.error(err);
    process.exitCode = 1;
  },
);

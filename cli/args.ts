/** Small helpers shared by the CLI commands: strict option parsing and one-line failures. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { OspreyError, oneLine } from '../protocol/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses argv strictly; an unknown flag or a missing value is a usage error, not a stack trace. */
export function parse<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', oneLine(err), { cause: err });
  }
}

/** Parses an integer option within bounds. */
export function intOption(name: string, value: string | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new OspreyError('OSP_ERR_USAGE', `--${name} must be an integer from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

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

/** A comma list (blanks dropped), or undefined when the option is absent. */
export function list(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Comma-separated finite numbers (exactly `count` when given), or undefined when the option is absent. */
export function numbers(flag: string, value: string | undefined, count?: number): number[] | undefined {
  const parts = list(value);
  if (!parts) return undefined;
  const nums = parts.map(Number);
  if (nums.some((n) => !Number.isFinite(n)) || (count !== undefined && nums.length !== count)) {
    throw new OspreyError('OSP_ERR_USAGE', `--${flag} needs ${count ?? 'comma-separated'} numbers, got "${value}"`);
  }
  return nums;
}

/** One of `allowed`, or undefined when the option is absent. */
export function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new OspreyError('OSP_ERR_USAGE', `--${flag} must be one of ${allowed.join('|')}, got "${value}"`);
  return value as T;
}

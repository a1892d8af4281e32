/**
 * Command-line arguments of the weir commands: one parser that words every mistake in one line naming
 * the flag, and the checks of numbers and durations the commands share. A mistake is a `UsageError`;
 * the command prints it with a pointer to its `--help` and exits 2.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** What `parseCommandArgs` returns: parseArgs' `{values, positionals}` for these options. */
export type ParsedArgs<O extends Options, P extends boolean> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: P }>>;

interface ParseArgsError {
  code: string;
  message: string;
}

/** parseArgs' own error, worded the weir way: `unknown option --foo`, `--slots needs a value`, … */
function usageErrorOf(err: ParseArgsError): UsageError {
  const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? '';
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${quoted}`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = quoted.split(' ')[0] ?? quoted;
      return new UsageError(err.message.includes('does not take') ? `${flag} takes no value` : `${flag} needs a value`);
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${JSON.stringify(quoted)}`);
    default:
      return new UsageError(err.message);
  }
}

/** `parseArgs` in strict mode; its errors become `UsageError`s of one line. */
export function parseCommandArgs<O extends Options, P extends boolean = false>(args: readonly string[], options: O, allowPositionals?: P): ParsedArgs<O, P> {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: (allowPositionals ?? false) as P });
  } catch (err) {
    if (err instanceof TypeError && 'code' in err) throw usageErrorOf(err as ParseArgsError);
    throw err;
  }
}

/** The line a command prints for a usage mistake: what is wrong, and where the help is. */
export function usageLine(command: string, err: unknown): string {
  return `${command}: ${err instanceof Error ? err.message : String(err)} (see ${command} --help)`;
}

/** An integer flag value ≥ `min` (1 by default); throws a `UsageError` naming the flag. */
export function positiveInteger(raw: string, flag: string, min = 1): number {
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`${flag} must be ${min === 1 ? 'a positive integer' : `an integer ≥ ${min}`}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** How long a process told to stop may take before it exits anyway (non-zero). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/** The flag every long-running command takes. */
export const SHUTDOWN_OPTION = { 'shutdown-timeout': { type: 'string' } } as const;

export const SHUTDOWN_USAGE = `--shutdown-timeout MS   once told to stop, exit within this (default ${DEFAULT_SHUTDOWN_TIMEOUT_MS}, env WEIR_SHUTDOWN_TIMEOUT_MS);
                          the exit code is 1 when the stop did not finish cleanly in time`;

/** `--shutdown-timeout MS`, else `WEIR_SHUTDOWN_TIMEOUT_MS`, else 10 s. */
export function shutdownTimeoutOf(values: { 'shutdown-timeout'?: string | undefined }, env: NodeJS.ProcessEnv): number {
  const flag = values['shutdown-timeout'];
  const raw = flag ?? env['WEIR_SHUTDOWN_TIMEOUT_MS'];
  if (raw === undefined || raw === '') return DEFAULT_SHUTDOWN_TIMEOUT_MS;
  return positiveInteger(raw, flag === undefined ? 'WEIR_SHUTDOWN_TIMEOUT_MS' : '--shutdown-timeout MS');
}

/** Whether `--help` or `-h` is among the arguments (before any other check, so help always works). */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/**
 * A command's arguments, or its exit code when there is nothing to run: `--help` prints `usage` (0), a
 * mistake prints one line that points to the help (2).
 */
export function commandArgs<T>(command: string, args: readonly string[], io: { out(line: string): void; err(line: string): void }, usage: string, parse: () => T): T | number {
  if (wantsHelp(args)) {
    io.out(usage);
    return 0;
  }
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(usageLine(command, err));
    return 2;
  }
}

/** JetStream keeps at most 5 replicas of a stream. */
const MAX_REPLICAS = 5;

export const REPLICAS_OPTION = { replicas: { type: 'string' } } as const;

export const REPLICAS_USAGE = `--replicas N            replicas of the buckets and streams this process creates, 1–${MAX_REPLICAS} (default 1,
                          env WEIR_REPLICAS; 3 on a 3-node NATS cluster: docs/operations.md)`;

/** `--replicas N`, else `WEIR_REPLICAS`, else 1. */
export function replicasOf(values: { replicas?: string | undefined }, env: NodeJS.ProcessEnv): number {
  const flag = values.replicas;
  const raw = flag ?? env['WEIR_REPLICAS'];
  if (raw === undefined || raw === '') return 1;
  const replicas = positiveInteger(raw, flag === undefined ? 'WEIR_REPLICAS' : '--replicas N');
  if (replicas > MAX_REPLICAS) throw new UsageError(`${flag === undefined ? 'WEIR_REPLICAS' : '--replicas N'} must be at most ${MAX_REPLICAS}, got ${replicas}`);
  return replicas;
}

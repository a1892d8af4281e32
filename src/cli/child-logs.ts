/**
 * The lines `weir up` passes on from its children. Its children write pino's JSON lines (and
 * nats-server its own text); `weir up` shows them one of two ways:
 * - `pretty` (the default on a terminal): pino-pretty's one line per entry (time, level, message, the
 *   other fields), coloured, behind the child's name; nats-server's lines in the same shape, without its
 *   info chatter (its banner alone is some twenty lines);
 * - `json` (the default elsewhere): each JSON line as it came, with the child's name added as `proc`, so
 *   that a pipe into `jq` or a log shipper reads every entry (other lines keep a `[child]` prefix).
 */
import { prettyFactory } from 'pino-pretty';

export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What a child's name is drawn in, in turn (ANSI foreground colours). */
const NAME_COLOURS = [36, 35, 34, 32, 33, 96, 95, 94] as const;
/** A dim grey, for the lines of nats-server. */
const DIM = 90;

const paint = (colour: number, text: string) => `\x1b[${colour}m${text}\x1b[39m`;

/** nats-server's log line: `[pid] 2026/12/08 00:43:56.801838 [INF] message`. */
const NATS_LINE = /^\[\d+\] \d{4}\/\d\d\/\d\d (\d\d:\d\d:\d\d\.\d{3})\d* \[([A-Z]{3})\] (.*)$/;
const NATS_LEVELS: Record<string, { name: string; colour: number; quiet: boolean }> = {
  TRC: { name: 'TRACE', colour: DIM, quiet: true },
  DBG: { name: 'DEBUG', colour: 34, quiet: true },
  INF: { name: 'INFO', colour: 32, quiet: true },
  WRN: { name: 'WARN', colour: 33, quiet: false },
  ERR: { name: 'ERROR', colour: 31, quiet: false },
  FTL: { name: 'FATAL', colour: 41, quiet: false },
};

export interface ChildLogOptions {
  format: LogFormat;
  /** ANSI colours (pretty only). */
  colour: boolean;
  /** The widest child name, so that every line's text starts in the same column. */
  nameWidth: number;
}

/** Returns the text to print for one line of a child, or undefined to print nothing. */
export type ChildLineFormatter = (child: string, line: string) => string | undefined;

function parsedObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{') || !line.endsWith('}')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function childLineFormatter({ format, colour, nameWidth }: ChildLogOptions): ChildLineFormatter {
  if (format === 'json') {
    return (child, line) => (parsedObject(line) === undefined ? `[${child}] ${line}` : `{"proc":${JSON.stringify(child)},${line.slice(1)}`);
  }
  // The child's name stands in for pino's name, pid and hostname.
  const pretty = prettyFactory({ colorize: colour, singleLine: true, ignore: 'pid,hostname,name', translateTime: 'SYS:HH:MM:ss.l' });
  const colours = new Map<string, number>();
  const label = (child: string) => {
    let c = colours.get(child);
    if (c === undefined) {
      c = child === 'nats' ? DIM : NAME_COLOURS[colours.size % NAME_COLOURS.length]!;
      colours.set(child, c);
    }
    const text = child.padEnd(nameWidth);
    return colour ? paint(c, text) : text;
  };
  return (child, line) => {
    if (parsedObject(line) !== undefined) {
      // pino-pretty ends an entry with a newline, and writes an error's stack on the lines after it.
      const body = pretty(line).replace(/\n$/, '');
      return body
        .split('\n')
        .map((part) => `${label(child)} ${part}`)
        .join('\n');
    }
    const nats = child === 'nats' ? NATS_LINE.exec(line) : null;
    if (nats !== null) {
      const [, time = '', code = '', message = ''] = nats;
      const level = NATS_LEVELS[code];
      if (level?.quiet === true) return undefined;
      const name = level?.name ?? code;
      return `${label(child)} [${time}] ${colour && level !== undefined ? paint(level.colour, name) : name}: ${message}`;
    }
    return `${label(child)} ${line}`;
  };
}

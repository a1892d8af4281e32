/**
 * Times on the wire and in stored records are µs since the Unix epoch (docs/protocol.md), as in the
 * reference; times inside a process are ms (Date.now()). These are the only conversions between them.
 */

/** A time or duration in ms as whole µs (never negative). */
export function microsFromMs(ms: number): number {
  return Math.max(0, Math.round(ms * 1000));
}

/** The wall clock in µs since the epoch. */
export function nowMicros(): number {
  return Date.now() * 1000;
}

/** A time in µs as whole ms, for Date and timers. */
export function msFromMicros(micros: number): number {
  return Math.floor(micros / 1000);
}

/** A duration in µs as whole ms, rounded up so that no configured wait becomes shorter. */
export function durationMsFromMicros(micros: number): number {
  return Math.ceil(micros / 1000);
}

/** How the console writes times and sizes. The API gives times in µs since the epoch. */

const MS_PER_MICRO = 1 / 1000;

/** `3 s`, `5 min`, `2 h`, `4 d`: how long ago `micros` was, at `nowMs`. */
export function ageOf(micros: number, nowMs: number = Date.now()): string {
  const seconds = Math.max(0, Math.round((nowMs - micros * MS_PER_MICRO) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h`;
  return `${Math.floor(hours / 24)} d`;
}

/** The local date and time, to the second. */
export function timeOf(micros: number): string {
  return new Date(micros * MS_PER_MICRO).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

/** `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function bytesOf(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * The output panel's memory, pure (tested in test/console/output-buffer.test.ts): the last `capacity`
 * rows of the preview stream in a ring, oldest evicted first. Rows evicted before they were ever shown
 * (more arrived between two renders than the ring holds, or while the view was paused) count as dropped
 * by the browser, beside the ones the server says it dropped (`event: dropped`).
 */
import type { OutputRows } from '../../types.js';

export const DEFAULT_OUTPUT_CAPACITY = 500;
/** A row's text is cut here: the panel is a preview, not a viewer for huge records. */
export const MAX_ROW_TEXT = 2_000;

export interface OutputEntry {
  /** 1, 2, 3…: arrival order since the buffer was created or cleared. */
  seq: number;
  operatorId: string;
  subtask: number;
  generation: number;
  text: string;
}

/** A row as one line of text: strings as they are, anything else as JSON, cut at `max` characters. */
export function rowText(row: unknown, max = MAX_ROW_TEXT): string {
  let text: string;
  if (typeof row === 'string') text = row;
  else {
    try {
      text = JSON.stringify(row) ?? String(row);
    } catch {
      text = String(row);
    }
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export class OutputBuffer {
  private readonly ring: (OutputEntry | undefined)[];
  /** Where the next entry goes. */
  private head = 0;
  private count = 0;
  private nextSeq = 1;
  /** The newest seq a render has shown. */
  private shownSeq = 0;
  private unshownEvicted = 0;
  private serverDropped = 0;

  constructor(readonly capacity: number = DEFAULT_OUTPUT_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, not ${capacity}`);
    this.ring = new Array<OutputEntry | undefined>(capacity);
  }

  /** Adds a batch's rows, in order. */
  push(batch: OutputRows): void {
    for (const row of batch.rows) {
      const evicted = this.ring[this.head];
      if (evicted !== undefined && evicted.seq > this.shownSeq) this.unshownEvicted++;
      this.ring[this.head] = { seq: this.nextSeq++, operatorId: batch.operator_id, subtask: batch.subtask_idx, generation: batch.generation, text: rowText(row) };
      this.head = (this.head + 1) % this.capacity;
      this.count = Math.min(this.capacity, this.count + 1);
    }
  }

  /** The server's `event: dropped`. */
  addServerDropped(count: number): void {
    if (Number.isFinite(count) && count > 0) this.serverDropped += count;
  }

  /** Oldest first. */
  entries(): OutputEntry[] {
    const out: OutputEntry[] = [];
    const first = (this.head - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) {
      const entry = this.ring[(first + i) % this.capacity];
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }

  /** Everything now held has been on screen. */
  markShown(): void {
    this.shownSeq = this.nextSeq - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Rows received so far (since the last clear). */
  get received(): number {
    return this.nextSeq - 1;
  }

  /** Rows lost: dropped by the server, plus evicted here before they were shown. */
  get dropped(): { server: number; browser: number; total: number } {
    return { server: this.serverDropped, browser: this.unshownEvicted, total: this.serverDropped + this.unshownEvicted };
  }

  clear(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.nextSeq = 1;
    this.shownSeq = 0;
    this.unshownEvicted = 0;
    this.serverDropped = 0;
  }
}

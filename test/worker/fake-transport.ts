import { setImmediate as tick } from 'node:timers/promises';
import type { DataTransport } from '../../src/worker/index.js';

/** In-memory transport: exact-subject delivery, asynchronous (a microtask later), in publish order. */
export class FakeTransport implements DataTransport {
  readonly published: Array<{ subject: string; message: unknown }> = [];
  private readonly subs = new Map<string, Set<(subject: string, data: Uint8Array) => void>>();
  private readonly errorListeners = new Set<(err: Error) => void>();
  flushes = 0;

  publish(subject: string, data: Uint8Array): void {
    this.published.push({ subject, message: JSON.parse(new TextDecoder().decode(data)) });
    for (const handler of this.subs.get(subject) ?? []) queueMicrotask(() => handler(subject, data));
  }

  subscribe(subject: string, handler: (subject: string, data: Uint8Array) => void) {
    const set = this.subs.get(subject) ?? new Set();
    this.subs.set(subject, set);
    set.add(handler);
    return { unsubscribe: () => set.delete(handler) };
  }

  /** Delivers raw bytes to whoever listens on `listenerSubject`, claiming they came on `subject`. */
  inject(listenerSubject: string, subject: string, message: unknown): void {
    const data = new TextEncoder().encode(JSON.stringify(message));
    for (const handler of this.subs.get(listenerSubject) ?? []) handler(subject, data);
  }

  async flush(): Promise<void> {
    this.flushes++;
    await tick();
  }

  onError(listener: (err: Error) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  raise(err: Error): void {
    for (const listener of [...this.errorListeners]) listener(err);
  }

  messagesOn(subject: string): unknown[] {
    return this.published.filter((p) => p.subject === subject).map((p) => p.message);
  }
}

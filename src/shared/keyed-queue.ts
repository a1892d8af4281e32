/**
 * Runs tasks one at a time per key, in the order they were added, and tasks of different keys
 * concurrently: what the controller does for each job's requests, a worker for each job's commands and
 * the checkpoint store for each run's writes. A task runs after the previous one of its key settled,
 * whether it succeeded or failed; a key's entry goes once its last task has settled.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with a task queued or running. */
  get size(): number {
    return this.tails.size;
  }

  /** Resolves once every task added so far has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
  }
}

import { RequestOne } from '@nats-io/nats-core/internal';
import { describe, expect, it } from 'vitest';

describe('importing the CLI', () => {
  it('patches nothing: the nats.js request fix is applied by main(), not by an import', async () => {
    const { resolver, cancel } = RequestOne.prototype as unknown as Record<string, unknown>;
    await import('../../src/cli/main.js');
    await import('../../src/cli/controller.js');
    await import('../../src/cli/worker.js');
    const after = RequestOne.prototype as unknown as Record<string, unknown>;
    expect(after['resolver']).toBe(resolver);
    expect(after['cancel']).toBe(cancel);
  });
});

import { describe, expect, it } from 'vitest';
import { runtimeImportClosure } from '../support/module-graph.js';

describe('weir/checkpoint stands alone', () => {
  it('loads only the checkpoint library, the JetStream layer, the protocol primitives, the record format and keys, and shared helpers', () => {
    const { files } = runtimeImportClosure('src/checkpoint/index.ts');
    // The job records' format and keys: protocol modules that load none of the messages (nor, through them, the machines).
    const protocol = ['src/protocol/primitives.ts', 'src/protocol/checkpoint-record.ts', 'src/protocol/subjects.ts'];
    const outside = [...files].filter((f) => !/^src\/(checkpoint|jetstream|shared)\//.test(f) && !protocol.includes(f));
    expect(outside).toEqual([]);
    expect([...files].filter((f) => f.startsWith('machines/') || f === 'src/store/job-store.ts' || f === 'src/store/event-log.ts')).toEqual([]);
  });

  it('the walk follows what a module really loads: the controller loads the machines and the job store', () => {
    const { files } = runtimeImportClosure('src/controller/controller.ts');
    expect(files).toContain('machines/job/machine.ts');
    expect(files).toContain('src/store/job-store.ts');
    expect(files).toContain('src/jetstream/retry.ts');
  });
});

/**
 * The layer rule (layers.config.js, enforced by eslint in `npm run check`) rejects imports that cross
 * the layers the wrong way; the repository as it stands passing it is `npm run check`'s job.
 */
import { readFileSync } from 'node:fs';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../layers.config.js';

const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname });

async function problems(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId?.startsWith('import-x/') || m.ruleId === 'no-restricted-imports').map((m) => `${m.ruleId}: ${m.message}`);
}

describe('the layer rule', () => {
  it('rejects the controller loading the worker (its operators) to learn operator names', async () => {
    const found = await problems('src/controller/registry.ts', "import { OPERATORS } from '../worker/operators/index.js';\nexport const n = OPERATORS.size;\n");
    expect(found).toEqual([expect.stringMatching(/no-restricted-paths.*src\/controller may not import src\/worker/)]);
  });

  it('rejects the checkpoint library reaching into the job store', async () => {
    const found = await problems('src/checkpoint/errors.ts', "import { UnknownJobError } from '../store/errors.js';\nexport const e = UnknownJobError;\n");
    expect(found).toEqual([expect.stringMatching(/src\/checkpoint may not import src\/store/)]);
  });

  it('lets the protocol read the machines’ types, and nothing else of them', async () => {
    expect(await problems('src/protocol/codec.ts', "import { JOB_STATES } from '../../machines/job/types.js';\nexport const n = JOB_STATES.length;\n")).toEqual([]);
    const found = await problems('src/protocol/codec.ts', "import { jobMachine } from '../../machines/job/machine.js';\nexport const id = jobMachine.id;\n");
    expect(found).toEqual([expect.stringMatching(/src\/protocol may import only machines\/job\/types\.ts/)]);
  });

  it('keeps machines/ on xstate alone', async () => {
    const found = await problems('machines/job/waits.ts', "import { z } from 'zod';\nimport { encode } from '../../src/protocol/codec.js';\nexport const x = [z, encode];\n");
    expect(found).toHaveLength(2);
    expect(found.join('\n')).toMatch(/machines may not import src\/protocol/);
    expect(found.join('\n')).toMatch(/zod/);
  });

  it('lets only the CLI wire the layers together, and the JetStream layer import nothing of weir', async () => {
    expect(await problems('src/cli/worker.ts', "import { startController } from '../controller/controller.js';\nexport const s = startController;\n")).toEqual([]);
    const found = await problems('src/jetstream/kv.ts', "import { encode } from '../protocol/codec.js';\nexport const e = encode;\n");
    expect(found).toEqual([expect.stringMatching(/src\/jetstream may not import src\/protocol/)]);
    expect(LAYERS['src/jetstream']).toEqual([]);
  });
});

describe('the README’s architecture diagram', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const diagram = /```mermaid\n(flowchart TD\n[\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const folder = (name: string) => (name === 'machines' ? 'machines' : `src/${name}`);
  const arrows = diagram
    .split('\n')
    .map((line) => /^\s*(\w+) -->(?:\|[^|]*\|)? (.+)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .flatMap(([, from, to]) => to!.split('&').map((t) => [folder(from!), folder(t.trim())] as const));

  it('draws only imports the layer rule allows', () => {
    expect(arrows.length).toBeGreaterThan(5);
    for (const [from, to] of arrows) expect(LAYERS[from], `${from} --> ${to}`).toContain(to);
  });

  it('draws every import the layer rule allows, directly or through a layer below (shared is below all)', () => {
    const reach = (from: string, seen = new Set<string>()): Set<string> => {
      for (const [a, b] of arrows) if (a === from && !seen.has(b)) reach(b, seen.add(b));
      return seen;
    };
    for (const [layer, allowed] of Object.entries(LAYERS)) {
      const reachable = reach(layer);
      expect(allowed.filter((l) => l !== 'src/shared' && !reachable.has(l)), layer).toEqual([]);
    }
  });
});

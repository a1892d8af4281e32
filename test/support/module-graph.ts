/**
 * The modules of this repository that importing a module loads at run time: its imports after
 * TypeScript's emit (type-only imports are gone, `import { type X }` under verbatimModuleSyntax is not),
 * followed transitively through relative specifiers. Packages are listed by name and not followed.
 */
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '../..');

export interface ModuleClosure {
  /** Repository paths (`src/store/job-store.ts`) of every module loaded, the entry included. */
  files: Set<string>;
  /** Bare specifiers imported on the way (`@nats-io/jetstream`, `node:fs`). */
  packages: Set<string>;
}

function emittedImports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  const { outputText } = ts.transpileModule(source, {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.NodeNext, target: ts.ScriptTarget.ES2023, verbatimModuleSyntax: true, isolatedModules: true },
  });
  return ts.preProcessFile(outputText, true, true).importedFiles.map((f) => f.fileName);
}

export function runtimeImportClosure(entry: string): ModuleClosure {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [resolve(ROOT, entry)];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    const path = relative(ROOT, file);
    if (files.has(path)) continue;
    files.add(path);
    for (const specifier of emittedImports(file)) {
      if (specifier.startsWith('.')) pending.push(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier);
    }
  }
  return { files, packages };
}

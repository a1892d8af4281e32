/** The example pipelines as the console bundles them (examples/), for tests that create jobs without the UI. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CreatePipelineBody } from '../../../src/api/schemas.js';
import { ROOT } from './build.js';

const example = (name: string) => JSON.parse(readFileSync(join(ROOT, 'examples', `${name}.json`), 'utf8')) as CreatePipelineBody;

export const EXAMPLE_COUNTER = example('counter');

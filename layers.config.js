// @ts-check
/**
 * weir's layers: which folder may import which. eslint.config.js enforces them with
 * import-x/no-restricted-paths, and README's architecture diagram draws them; change the three together.
 * `shared` (small helpers that import nothing of weir's) is below every layer.
 */

/** @type {Record<string, readonly string[]>} Each layer and the layers it may import (besides itself and shared). */
export const LAYERS = {
  'machines': [],
  'src/shared': [],
  'src/jetstream': [],
  'src/protocol': ['machines'],
  'src/inspect': [],
  'src/store': ['src/jetstream', 'src/protocol'],
  'src/checkpoint': ['src/jetstream', 'src/protocol'],
  'src/controller': ['machines', 'src/protocol', 'src/store', 'src/checkpoint'],
  'src/worker': ['src/protocol', 'src/checkpoint'],
  'src/api': ['src/protocol', 'src/store'],
  'src/cli': ['machines', 'src/shared', 'src/jetstream', 'src/protocol', 'src/inspect', 'src/store', 'src/checkpoint', 'src/controller', 'src/worker', 'src/api'],
};

/** The protocol takes the machines' vocabulary (states, stop modes, failure shapes) and nothing else of them. */
const PROTOCOL_MAY_READ = ['./job/types.ts'];

/** @typedef {{ target: string, from: string, except?: string[], message: string }} Zone */

/** @type {Zone[]} The zones of import-x/no-restricted-paths: for each layer, every layer it may not import. */
export const LAYER_ZONES = Object.entries(LAYERS).flatMap(([layer, allowed]) => {
  /** @type {Zone[]} */
  const zones = Object.keys(LAYERS)
    .filter((other) => other !== layer && other !== 'src/shared' && !allowed.includes(other))
    .map((other) => ({ target: `./${layer}`, from: `./${other}`, message: `${layer} may not import ${other} (layers.config.js)` }));
  if (layer === 'src/protocol') {
    zones.push({ target: './src/protocol', from: './machines', except: PROTOCOL_MAY_READ, message: 'src/protocol may import only machines/job/types.ts of the machines (layers.config.js)' });
  }
  return zones;
});

export * from './transport.js';
export * from './hash.js';
export * from './output-channel.js';
export * from './input-gate.js';
export * from './runner.js';
export * from './graph.js';

/** The worker side of weir: operators and the NATS data plane that runs them. */
export * from './errors.js';
export * from './operators/index.js';
export * from './dataplane/index.js';

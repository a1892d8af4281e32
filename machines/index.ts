export { jobMachine, type JobMachine } from './job/machine.js';
export { jobSetup, errorOf, ttlDeadline, type StopResult } from './job/setup.js';
export { DEFAULT_CONFIG, DEFAULT_POLICY, RETRY_BUDGET, backoffDelay, initialContext, nextProgressDeadline } from './job/policy.js';
export { availableActions, type AvailableAction } from './job/actions-ui.js';
export { waitOf, type WaitingSnapshot } from './job/waits.js';
export * from './job/types.js';

/**
 * The job machine's vocabulary as the wire and the stores use it: its states, stop modes, waits and
 * failure shapes. The machine owns them (machines/job/types.ts); the layers above the protocol take them
 * from here, so only the protocol reaches into machines/.
 */
export {
  JOB_STATES,
  STOP_MODES,
  WAIT_KINDS,
  TERMINAL_STATES,
  type DesiredConfig,
  type ErrorDomain,
  type JobFailure,
  type JobState,
  type RetryHint,
  type StopMode,
  type WaitKind,
} from '../../machines/job/types.js';

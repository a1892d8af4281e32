/**
 * The checkpoint store as a library (`import { openCheckpointStore } from 'weir/checkpoint'`): runs,
 * checkpoints and events on JetStream, for the controller, the workers and other orchestrators alike;
 * and a job's checkpoint records, which weir's controller and workers both read.
 */
export {
  CheckpointStore,
  openCheckpointStore,
  type AppendEventOptions,
  type CheckpointStoreOptions,
  type DeleteRunResult,
} from './store.js';
export {
  CHECKPOINT_EVENT_STREAM,
  CHECKPOINT_META_BUCKET,
  CHECKPOINT_STATE_BUCKET,
  CHECKPOINT_STORE_PREFIX_PATTERN,
  CHECKPOINT_STORE_STREAM_SUBJECTS,
  checkpointStoreNames,
  checkpointStoreSubjects,
  DEFAULT_CHECKPOINT_STORE_PREFIX,
  DEFAULT_MAX_EVENT_BYTES,
  DEFAULT_MAX_STATE_BYTES,
  MAX_EVENTS_LIMIT,
  MAX_METADATA_BYTES,
  MAX_RUN_BYTES,
  RUN_STATUSES,
  type Checkpoint,
  type CheckpointEvent,
  type CheckpointMeta,
  type CheckpointStoreNames,
  type CreateRunInput,
  type EventPage,
  type JsonValue,
  type KnownRunStatus,
  type Run,
  type RunStatus,
} from './schemas.js';
export {
  JobCheckpointRecords,
  legacyKeysOfBucket,
  openCheckpointKv,
  type JobCheckpointRecordsOptions,
  type StoredRecord,
  type UnreadableRecord,
} from './job-records.js';
export { CorruptCheckpointError, RunContentionError, RunExistsError, UnknownRunError } from './errors.js';
export {
  ConflictError,
  CorruptRecordError,
  StoreError,
  StoreUnavailableError,
  StoreValidationError,
  isTransientStoreError,
} from '../jetstream/errors.js';
export {
  IncrementalStateWriter,
  pruneUnreferenced,
  referencedSequences,
  restoreTables,
  stateNodeId,
  type CompactionSpan,
  type IncrementalStateOptions,
  type StateCheckpoint,
  type WrittenStateBlob,
} from './incremental.js';
export { StateTables, TableState } from './incremental-tables.js';
export {
  CorruptStateError,
  DEFAULT_MAX_DELTA_BYTES,
  DEFAULT_MAX_DELTAS,
  parseStateRef,
  STATE_FORMAT_VERSION,
  StateFormatError,
  type StateBlobKind,
  type StateBlobRef,
  type StateRef,
  type TableRef,
} from './incremental-format.js';

export { openStore, JOBS_BUCKET, LOG_STREAM, LOG_SUBJECT_PREFIX, type Store, type StoreOptions } from './open.js';
export {
  initialStatus,
  JOB_KEYS,
  type ConfigChange,
  type ConfigSnapshot,
  type ConfigWatcher,
  type CreateOptions,
  type DeleteOptions,
  type JobKey,
  type JobRecord,
  type JobStore,
  type Mutate,
  type Versioned,
  type WatchOptions,
} from './job-store.js';
export { MAX_PAGE_LIMIT, type AppendOptions, type EventLog, type JobLogRow, type JobsLogTail, type LogTail, type Page, type PageOptions } from './event-log.js';
export {
  ConflictError,
  CorruptRecordError,
  StoreError,
  StoreUnavailableError,
  StoreValidationError,
  isTransientStoreError,
  type ConflictReason,
} from '../jetstream/errors.js';
export { PartialJobError, StaleOwnerError, UnknownJobError } from './errors.js';
export {
  configSchema,
  JOB_ID_PATTERN,
  LOG_EVENT_KINDS,
  logEventSchema,
  specSchema,
  statusSchema,
  type ErrorLogEvent,
  type JobConfigRecord,
  type JobOwner,
  type JobSpec,
  type JobStatusRecord,
  type JsonRecord,
  type JsonValue,
  type LogEvent,
  type LogEventKind,
  type LogRow,
  type TransitionLogEvent,
  type WarningLogEvent,
} from './schemas.js';

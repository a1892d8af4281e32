/**
 * weir's wire protocol: every NATS subject and message, the codec and the pipeline graph check.
 * See docs/protocol.md.
 */
export {
  PROTOCOL_VERSION,
  MAX_MESSAGE_BYTES,
  MAX_ERROR_TEXT_BYTES,
  MIN_CHECKPOINT_INTERVAL_MICROS,
  MAX_CHECKPOINT_INTERVAL_MICROS,
  DEFAULT_LIST_LIMIT,
  MAX_LIST_LIMIT,
  ID_PATTERN,
  idSchema,
  isValidId,
  truncateErrorText,
  type JsonValue,
} from './primitives.js';
export {
  ERROR_CODES,
  DECODE_ERROR_CODES,
  errorReplySchema,
  errorReply,
  isErrorReply,
  RequestRejected,
  type ErrorCode,
  type DecodeErrorCode,
  type ProtocolError,
  type ErrorReply,
} from './errors.js';
export { replyTo, rejectionOf } from './reply.js';
export { encode, decode, decodeValue, decodeReply, type DecodeResult, type ReplyResult, type DecodeOptions } from './codec.js';
export {
  EDGE_KINDS,
  pipelineSchema,
  graphSchema,
  graphNodeSchema,
  graphEdgeSchema,
  type EdgeKind,
  type Graph,
  type GraphNode,
  type GraphEdge,
  type Pipeline,
  type PipelineInput,
} from './pipeline.js';
export {
  validateGraph,
  effectiveParallelism,
  type OperatorSpec,
  type OperatorKind,
  type GraphProblem,
  type GraphProblemCode,
} from './graph.js';
export * from './messages.js';
export {
  SUBJECTS,
  subjects,
  parseSubject,
  subjectsOverlap,
  InvalidTokenError,
  JOB_LOG_STREAM,
  JOB_LOG_SUBJECTS,
  JOBS_KV_BUCKET,
  JOBS_KV_STREAM,
  JOBS_KV_SUBJECTS,
  CHECKPOINTS_KV_BUCKET,
  checkpointKey,
  STREAM_SUBJECTS,
  CHECKPOINTS_KV_SUBJECTS,
  type SubjectSpec,
  type SubjectKind,
  type SubjectName,
  type Party,
} from './subjects.js';

import { describe, expect, expectTypeOf, it } from 'vitest';
import { STATUS_OF_CODE } from '../../src/api/errors.js';
import { CorruptCheckpointError, RunContentionError, RunExistsError, UnknownRunError } from '../../src/checkpoint/index.js';
import { ConflictError, CorruptRecordError, StoreError, StoreUnavailableError, StoreValidationError, type StoreErrorCode } from '../../src/jetstream/errors.js';
import { ERROR_CODES, errorCodeOf, RequestRejected, type ErrorCode } from '../../src/protocol/index.js';
import { PartialJobError, UnknownJobError } from '../../src/store/index.js';
import { WorkerRejected } from '../../src/controller/worker-requests.js';

describe('the error catalogue', () => {
  it('the persistence layer’s codes are codes of the catalogue', () => {
    expectTypeOf<StoreErrorCode>().toExtend<ErrorCode>();
  });

  it('every error that crosses a boundary says its code, from the store to the HTTP status', () => {
    const cases: [Error, ErrorCode, number][] = [
      [new UnknownJobError('j1'), 'unknown_job', 404],
      [new PartialJobError('j1', ['spec'], ['config', 'status']), 'conflict', 409],
      [new ConflictError('j1', 'contention', 'lost'), 'conflict', 409],
      [new StoreUnavailableError('get'), 'unavailable', 503],
      [new StoreValidationError('bad limit'), 'bad_schema', 400],
      [new CorruptRecordError('j1.status'), 'internal', 500],
      [new StoreError('something'), 'internal', 500],
      [new RunExistsError('r1'), 'conflict', 409],
      [new RunContentionError('r1', 'save', 3), 'conflict', 409],
      [new UnknownRunError('r1'), 'unknown_checkpoint', 404],
      [new CorruptCheckpointError('r1', 'n', 3, 'digest', 'mismatch'), 'corrupt_checkpoint', 500],
      [new RequestRejected('not_running', 'stopped'), 'not_running', 409],
      [new WorkerRejected('stale_generation', 'old'), 'stale_generation', 409],
    ];
    for (const [err, code, status] of cases) {
      expect([err.name, errorCodeOf(err)]).toEqual([err.name, code]);
      expect(STATUS_OF_CODE[errorCodeOf(err)]).toBe(status);
    }
  });

  it('anything else is internal: bugs, and errors whose code is not weir’s', () => {
    expect(errorCodeOf(new TypeError('x is undefined'))).toBe('internal');
    expect(errorCodeOf(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe('internal');
    expect(errorCodeOf('a string')).toBe('internal');
    expect(errorCodeOf({ code: 'conflict' })).toBe('internal');
    expect(ERROR_CODES).toContain('internal');
  });
});

/**
 * Delivery of the workers' task and checkpoint events to each job's runtime: the controller's two
 * wildcard subscriptions for every job (`JobEventRouter`), or a job's own two (`deliverJobEvents`
 * without a router).
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SUBJECTS, subjects } from '../protocol/index.js';

/** One job's handlers of its worker events. */
export interface JobEventHandlers {
  task(msg: Msg): void;
  checkpoint(msg: Msg): void;
}

/** The `<job>` token of `weir.ctl.jobs.<job>.<kind>`; undefined for any other shape. */
function jobToken(subject: string): string | undefined {
  let dot = -1;
  for (let token = 0; token < 3; token++) {
    dot = subject.indexOf('.', dot + 1);
    if (dot < 0) return undefined;
  }
  const end = subject.indexOf('.', dot + 1);
  return end < 0 ? undefined : subject.slice(dot + 1, end);
}

/**
 * Every job's task and checkpoint events on two wildcard subscriptions, handed to the job's runtime by
 * the subject's job token. A subscription per job and subject was about 1.8 KiB of client state each
 * (heap snapshot at 3,000 jobs), and as many interests on the server. Events of a job without a runtime
 * here are dropped, as the server dropped them when nothing subscribed.
 */
export class JobEventRouter {
  private readonly handlers = new Map<string, JobEventHandlers>();
  private readonly subscriptions: Subscription[];

  constructor(nc: NatsConnection, log: Logger) {
    const subscribe = (subject: string, kind: keyof JobEventHandlers): Subscription =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) {
            log.error({ err, subject }, 'job subscription failed');
            return;
          }
          const jobId = jobToken(msg.subject);
          if (jobId !== undefined) this.handlers.get(jobId)?.[kind](msg);
        },
      });
    this.subscriptions = [subscribe(SUBJECTS.jobTasks.wildcard, 'task'), subscribe(SUBJECTS.jobCheckpoints.wildcard, 'checkpoint')];
  }

  /** Routes the job's events to `handlers` until the returned function is called. */
  route(jobId: string, handlers: JobEventHandlers): () => void {
    if (this.handlers.has(jobId)) throw new Error(`job ${jobId} already has a runtime`);
    this.handlers.set(jobId, handlers);
    return () => {
      if (this.handlers.get(jobId) === handlers) this.handlers.delete(jobId);
    };
  }

  /** Drains both subscriptions. */
  async close(): Promise<void> {
    await Promise.allSettled(this.subscriptions.map((s) => s.drain()));
  }
}

/**
 * Hands the job's worker events to `handlers`, through `router` when there is one, else on subscriptions
 * of the job's own, until the returned function is called (it resolves once those are drained). A
 * handler that throws is logged, and the next event is handled all the same.
 */
export function deliverJobEvents(nc: NatsConnection, jobId: string, handlers: JobEventHandlers, log: Logger, router?: JobEventRouter): () => Promise<void> {
  const handled =
    (handler: (msg: Msg) => void) =>
    (msg: Msg): void => {
      try {
        handler(msg);
      } catch (e) {
        log.error({ err: e, subject: msg.subject }, 'job event handler failed');
      }
    };
  const subscribe = (subject: string, handler: (msg: Msg) => void): Subscription => {
    const handle = handled(handler);
    return nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) {
          log.error({ err, subject }, 'job subscription failed');
          return;
        }
        handle(msg);
      },
    });
  };

  const unroute = router?.route(jobId, { task: handled((msg) => handlers.task(msg)), checkpoint: handled((msg) => handlers.checkpoint(msg)) });
  const subscriptions = router !== undefined ? [] : [subscribe(subjects.jobTasks(jobId), (msg) => handlers.task(msg)), subscribe(subjects.jobCheckpoints(jobId), (msg) => handlers.checkpoint(msg))];
  return async () => {
    unroute?.();
    await Promise.allSettled(subscriptions.map((s) => s.drain()));
  };
}

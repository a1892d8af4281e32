/**
 * One NATS subscription per job for a preview sink's rows (`weir.jobs.<job>.output`), fanned out to
 * every SSE client of that job, plus one on the job's state subject (`weir.jobs.<job>.state`) so that
 * the streams end when the job leaves Running. Started with the job's first output client, stopped when
 * the last leaves. Core NATS delivers at most once and a state event can be missed across a reconnect,
 * so the hub also asks the controller for the job's state every `pollMs` while it has clients.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { JobState, PreviewOutput } from '../../protocol/index.js';
import { decode, jobStateEventSchema, previewOutputSchema, subjects } from '../../protocol/index.js';
import type { ControllerClient } from '../controller-client.js';
import { ApiError } from '../errors.js';
import { HubRegistry, SubscriberHub } from './hub-registry.js';

export interface OutputSubscriber {
  output(message: PreviewOutput): void;
  /** A preview subtask of `generation` sent its last batch. */
  subtaskDone(generation: number): void;
  /** The job's state as last seen (a state event or a poll). */
  state(state: JobState, generation: number): void;
  /** The job is gone or the hub stopped. */
  gone(reason: string): void;
}

/** Generations whose done subtasks are remembered. */
const DONE_GENERATIONS = 4;

export class JobOutputHub extends SubscriberHub<OutputSubscriber> {
  private readonly subs: Subscription[] = [];
  /** Per generation: the `node/subtask` of every preview subtask that sent `done`. */
  private readonly done = new Map<number, Set<string>>();
  private poll: NodeJS.Timeout | undefined;
  /** Counts state observations, so a client can tell whether one arrived while it looked the job up. */
  stateMark = 0;
  lastState: { state: JobState; generation: number } | undefined;
  invalid = 0;
  readonly ready: Promise<void>;

  constructor(
    readonly jobId: string,
    private readonly nc: NatsConnection,
    private readonly controller: ControllerClient,
    private readonly logger: Logger,
    private readonly pollMs: number,
    private readonly invalidTotal: InvalidOutputCount,
    private readonly onStopped: (hub: JobOutputHub) => void,
  ) {
    super();
    this.subs.push(
      nc.subscribe(subjects.jobOutput(jobId), { callback: (err, msg) => (err === null ? this.onOutput(msg.data) : undefined) }),
      nc.subscribe(subjects.jobState(jobId), { callback: (err, msg) => (err === null ? this.onStateEvent(msg.data) : undefined) }),
    );
    // Once the server has the subscriptions, nothing published after this is missed.
    this.ready = nc.flush();
    this.ready.catch(() => undefined);
    this.poll = setInterval(() => void this.pollState(), pollMs);
    this.poll.unref();
  }

  /** The `node/subtask` keys of `generation`'s preview subtasks that have sent `done`. */
  doneOf(generation: number): ReadonlySet<string> {
    return this.done.get(generation) ?? new Set();
  }

  protected halt(): void {
    clearInterval(this.poll);
    for (const sub of this.subs) sub.unsubscribe();
    this.done.clear();
    this.onStopped(this);
  }

  private onOutput(data: Uint8Array): void {
    if (this.stopped) return;
    const decoded = decode(previewOutputSchema, data);
    if (!decoded.ok || decoded.value.job_id !== this.jobId) {
      this.invalid++;
      this.invalidTotal.count++;
      const reason = decoded.ok ? `job_id ${decoded.value.job_id}` : decoded.error.message;
      this.logger.warn({ job_id: this.jobId, reason, invalid: this.invalid }, 'dropped an invalid preview output message');
      return;
    }
    const message = decoded.value;
    for (const sub of this.live) sub.output(message);
    if (message.done === true) {
      let set = this.done.get(message.generation);
      if (set === undefined) {
        set = new Set();
        this.done.set(message.generation, set);
        for (const g of [...this.done.keys()].sort((a, b) => a - b).slice(0, Math.max(0, this.done.size - DONE_GENERATIONS))) this.done.delete(g);
      }
      set.add(`${message.node_id}/${message.subtask_index}`);
      for (const sub of this.live) sub.subtaskDone(message.generation);
    }
  }

  private onStateEvent(data: Uint8Array): void {
    if (this.stopped) return;
    const decoded = decode(jobStateEventSchema, data);
    if (!decoded.ok) return;
    this.observe(decoded.value.state, decoded.value.generation);
  }

  private observe(state: JobState, generation: number): void {
    this.stateMark++;
    this.lastState = { state, generation };
    for (const sub of this.live) sub.state(state, generation);
  }

  private async pollState(): Promise<void> {
    if (this.stopped || this.live.size === 0) return;
    try {
      const view = await this.controller.get(this.jobId);
      if (!this.stopped) this.observe(view.state, view.generation);
    } catch (err) {
      if (err instanceof ApiError && err.statusCode === 404) {
        for (const sub of [...this.live]) sub.gone(`job ${this.jobId} no longer exists`);
      }
      // Anything else (the controller unreachable for a moment): the next poll tries again.
    }
  }
}

/** Preview messages that did not decode, over every output hub of one API (a metric). */
export interface InvalidOutputCount {
  count: number;
}

/** The output hubs by job: `join` starts the job's hub if it has none. */
export function jobOutputHubs(
  nc: NatsConnection,
  controller: ControllerClient,
  logger: Logger,
  pollMs: number,
  invalid: InvalidOutputCount,
): HubRegistry<OutputSubscriber, JobOutputHub> {
  return new HubRegistry({
    create: (jobId, onStopped) => new JobOutputHub(jobId, nc, controller, logger, pollMs, invalid, onStopped),
    stoppedMessage: (_hub, jobId) => `the output hub of job ${jobId} stopped`,
  });
}

/**
 * Seeing the fleet (`weir.api.controllers.list`): every controller the shard leases name, with the shards
 * it owns, the jobs it runs and how long ago its leases and presence were renewed. Whichever controller
 * receives the request answers for the whole fleet from its own view of the leases bucket, in memory:
 * each controller publishes how many jobs it runs with its presence, so the answer reads no job key
 * (a listing of 10,000 keys per request, and one that stalls while the jobs stream elects a leader).
 */
import type { Msg } from '@nats-io/transport-node';
import { PROTOCOL_VERSION, listControllersRequestSchema, type ControllerViewMessage, type ListControllersReply } from '../protocol/index.js';
import { body } from './request-parsing.js';
import type { ShardLeases } from './shard-leases.js';

export interface FleetRequestsOptions {
  leases: Pick<ShardLeases, 'fleet' | 'shards' | 'ttlMs'>;
  /** This controller: the reply's `answered_by`. */
  controllerId: string;
  /** Largest accepted request. */
  maxMessageBytes: number;
}

export interface FleetRequests {
  controllers: (msg: Msg) => ListControllersReply;
}

export function fleetRequests(options: FleetRequestsOptions): FleetRequests {
  const { leases, controllerId, maxMessageBytes: maxBytes } = options;

  function controllerList(msg: Msg): ListControllersReply {
    body(listControllersRequestSchema, msg, maxBytes);
    const data: ControllerViewMessage[] = leases.fleet().map((view) => ({
      controller_id: view.controllerId,
      jobs: view.jobs ?? 0,
      shards: view.shards,
      oldest_lease_age_ms: view.oldestLeaseAgeMs,
      presence_age_ms: view.presenceAgeMs,
      live: view.live,
    }));
    return { v: PROTOCOL_VERSION, shards: leases.shards, lease_ttl_ms: leases.ttlMs, answered_by: controllerId, data };
  }

  return { controllers: controllerList };
}

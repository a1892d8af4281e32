/**
 * The API's own Prometheus metrics, in a registry of its own (not prom-client's global one, so two APIs in
 * one process, as in tests, do not collide): request durations by route, the reconnects of the API's NATS
 * connection, the SSE clients, and whether the controller answered the last scrape.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface StreamStats {
  clients: number;
  dropped: number;
}

export interface HttpMetrics {
  readonly registry: Registry;
  /** Whether the controller answered the scrape now being served. */
  setControllerUp(up: boolean): void;
  /** Stops following the connection's status. */
  close(): void;
}

export function httpMetrics(app: FastifyInstance, nc: NatsConnection, streamStats: () => StreamStats): HttpMetrics {
  const registry = new Registry();
  const duration = new Histogram({
    name: 'weir_api_http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const reconnects = new Counter({ name: 'weir_api_nats_reconnects_total', help: "Reconnects of the API's NATS connection", registers: [registry] });
  new Gauge({
    name: 'weir_api_sse_clients',
    help: 'Open SSE streams',
    registers: [registry],
    collect() {
      this.set(streamStats().clients);
    },
  });
  let droppedSeen = 0;
  new Counter({
    name: 'weir_api_sse_dropped_events_total',
    help: 'Events dropped because an SSE client read too slowly',
    registers: [registry],
    collect() {
      const dropped = streamStats().dropped;
      if (dropped > droppedSeen) this.inc(dropped - droppedSeen);
      droppedSeen = Math.max(droppedSeen, dropped);
    },
  });
  const controllerUp = new Gauge({ name: 'weir_controller_up', help: 'Whether the controller answered the metrics request of this scrape', registers: [registry] });

  app.addHook('onResponse', async (request, reply) => {
    // The pattern, not the path: ids would make one series per job. Unmatched paths share one label.
    const route = request.routeOptions.url ?? 'unmatched';
    duration.observe({ method: request.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  const status = nc.status();
  void (async () => {
    for await (const s of status) if (s.type === 'reconnect') reconnects.inc();
  })().catch(() => undefined);

  return {
    registry,
    setControllerUp: (up) => controllerUp.set(up ? 1 : 0),
    close: () => (status as Partial<{ stop(): void }>).stop?.(),
  };
}

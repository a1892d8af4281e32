import type { EventLog } from '../../store/index.js';
import type { ControllerClient } from '../controller-client.js';

/** What the REST route plugins need: the controller over NATS and the job event log. */
export interface RouteDeps {
  controller: ControllerClient;
  log: EventLog;
}

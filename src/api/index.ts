/** weir's HTTP API: `startApi` serves it, `buildApi` gives the app without listening. */
export { API_PREFIX, DOCS_PREFIX, DEFAULT_BODY_LIMIT_BYTES, DEFAULT_HOST, DEFAULT_PORT, buildApi, startApi, type ApiOptions, type ApiServer } from './server.js';
export { ApiError, STATUS_OF_CODE, type ErrorBody } from './errors.js';
export { controllerClient, type ControllerClient, type ControllerClientOptions } from './controller-client.js';

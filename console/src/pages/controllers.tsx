/** The controllers sharing the jobs (`GET /controllers`, as `weir controllers` shows them). */
import { useEffect, useState } from 'preact/hooks';
import { listControllers } from '../api.js';
import type { ControllerList } from '../types.js';
import type { PageProps } from '../router.js';

export function ControllersPage(_props: PageProps) {
  const [fleet, setFleet] = useState<ControllerList | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);

  function load(): AbortController {
    const abort = new AbortController();
    setLoading(true);
    listControllers(abort.signal)
      .then((list) => {
        setFleet(list);
        setFailure(null);
      })
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setFailure(err instanceof Error ? err.message : String(err));
      })
      .finally(() => setLoading(false));
    return abort;
  }

  useEffect(() => {
    const abort = load();
    return () => abort.abort();
  }, []);

  return (
    <section>
      <div class="page-head">
        <h1>Controllers</h1>
        <button type="button" class="secondary" onClick={() => load()} disabled={loading}>
          Refresh
        </button>
      </div>
      {failure !== null && <p class="notice error">{failure}</p>}
      {fleet !== null && (
        <>
          <p class="muted">
            {fleet.shards} shards, lease TTL {fleet.lease_ttl_ms / 1000} s; answered by <code>{fleet.answered_by}</code>.
          </p>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Controller</th>
                  <th scope="col">Live</th>
                  <th scope="col" class="num">Shards</th>
                  <th scope="col" class="num">Jobs</th>
                  <th scope="col" class="num">Oldest lease</th>
                </tr>
              </thead>
              <tbody>
                {fleet.data.map((c) => (
                  <tr key={c.controller_id}>
                    <td>
                      <code>{c.controller_id}</code>
                    </td>
                    <td>{c.live ? 'yes' : 'no'}</td>
                    <td class="num">{c.shards}</td>
                    <td class="num">{c.jobs}</td>
                    <td class="num">{c.oldest_lease_age_ms === null ? '—' : `${(c.oldest_lease_age_ms / 1000).toFixed(1)} s`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

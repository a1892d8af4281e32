/**
 * The job page (`/jobs/:id`). Placeholder: another change builds it (graph, statechart, transitions,
 * actions, checkpoints, errors, output, metrics); see console/CONVENTIONS.md.
 */
import { Link, type PageProps } from '../../router.js';

export default function JobPage({ params }: PageProps) {
  return (
    <section>
      <p>
        <Link href="/jobs">← Jobs</Link>
      </p>
      <h1>Job {params['id']}</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}

/** The create page (`/create`). Placeholder: another change builds it; see console/CONVENTIONS.md. */
import type { PageProps } from '../router.js';

export default function CreatePage(_props: PageProps) {
  return (
    <section>
      <h1>Create a pipeline</h1>
      <p class="muted">Coming soon.</p>
    </section>
  );
}

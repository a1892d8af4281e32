/** Any path no route matches. */
import { Link, type PageProps } from '../router.js';

export function NotFoundPage(_props: PageProps) {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at <code>{location.pathname}</code>. <Link href="/jobs">See the jobs</Link>.
      </p>
    </section>
  );
}

/** The console's shell: the header and its navigation, the error banner, the token prompt, and the routes. */
import { ErrorBanner } from './components/error-banner.js';
import { TokenPrompt } from './components/token-prompt.js';
import { ControllersPage } from './pages/controllers.js';
import { JobsPage } from './pages/jobs.js';
import { NotFoundPage } from './pages/not-found.js';
import { Link, Router, useLocation, type RouteDef } from './router.js';

/** Every page of the console. Heavy pages load on first visit (`load`), keeping the first download small. */
export const ROUTES: readonly RouteDef[] = [
  { pattern: '/', title: 'Jobs', page: JobsPage },
  { pattern: '/jobs', title: 'Jobs', page: JobsPage },
  { pattern: '/jobs/:id', title: 'Job', load: () => import('./pages/job/index.js') },
  { pattern: '/create', title: 'Create', load: () => import('./pages/create.js') },
  { pattern: '/controllers', title: 'Controllers', page: ControllersPage },
];

const NAV = [
  { href: '/jobs', label: 'Jobs', active: (path: string) => path === '/' || path.startsWith('/jobs') },
  { href: '/create', label: 'Create', active: (path: string) => path === '/create' },
  { href: '/controllers', label: 'Controllers', active: (path: string) => path === '/controllers' },
];

function Header() {
  const { path } = useLocation();
  return (
    <header class="site">
      <Link href="/jobs" class="brand">
        weir
      </Link>
      <nav aria-label="Main">
        {NAV.map((item) => (
          <Link key={item.href} href={item.href} aria-current={item.active(path) ? 'page' : undefined}>
            {item.label}
          </Link>
        ))}
      </nav>
      <a class="docs" href="/api/v1/docs">
        API docs
      </a>
    </header>
  );
}

export function App() {
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <Header />
      <ErrorBanner />
      <main id="main">
        <Router routes={ROUTES} notFound={NotFoundPage} />
      </main>
      <TokenPrompt />
    </>
  );
}

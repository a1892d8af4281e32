/** The console's entry point (index.html loads it): renders the app and routes stray failures to the banner. */
import { render } from 'preact';
import { App } from './app.js';
import { showError } from './components/error-banner.js';
import './style.css';

// Shown to the user too; still logged by the browser, so a bug cannot hide.
window.addEventListener('unhandledrejection', (event) => showError(event.reason));

const root = document.getElementById('app');
if (root !== null) render(<App />, root);

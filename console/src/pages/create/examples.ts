/**
 * The example pipelines of examples/, bundled into the create page's chunk at build time as the files'
 * own text (so the editor shows them as they are written).
 */
import bounded from '../../../../examples/bounded.json?raw';
import counter from '../../../../examples/counter.json?raw';
import exactlyOnce from '../../../../examples/exactly-once.json?raw';

export interface Example {
  name: string;
  /** What it does, in a few words (the button's description). */
  about: string;
  text: string;
}

export const EXAMPLES: readonly Example[] = [
  { name: 'counter', about: 'counts keys until stopped, with a preview sink', text: counter },
  { name: 'bounded', about: '1,000 events, then it finishes by itself', text: bounded },
  { name: 'exactly-once', about: 'counts into a JetStream stream, exactly once', text: exactlyOnce },
];

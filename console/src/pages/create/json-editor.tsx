/**
 * The pipeline's JSON: a plain textarea with line numbers beside it, lines with a problem marked (⚠ and
 * the problem as a title), and `revealLine` to select a line when its error is clicked.
 */
import { useRef } from 'preact/hooks';

export interface JsonEditorProps {
  value: string;
  onInput: (value: string) => void;
  /** Line (1-based) → what is wrong there. */
  problems: ReadonlyMap<number, string>;
  describedBy?: string;
  /** Receives the function that selects a line (the page's error list calls it). */
  revealRef?: { current: ((line: number) => void) | null };
}

export function JsonEditor({ value, onInput, problems, describedBy, revealRef }: JsonEditorProps) {
  const area = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const lines = Math.max(1, value.split('\n').length);

  if (revealRef !== undefined) {
    revealRef.current = (line) => {
      const element = area.current;
      if (element === null) return;
      const starts = [0];
      for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) === 10) starts.push(i + 1);
      const start = starts[line - 1] ?? 0;
      const end = (starts[line] ?? value.length + 1) - 1;
      element.focus();
      element.setSelectionRange(start, Math.max(start, end));
      const lineHeight = element.scrollHeight / Math.max(1, starts.length);
      element.scrollTop = Math.max(0, (line - 3) * lineHeight);
    };
  }

  return (
    <div class="json-editor">
      <div class="json-gutter" ref={gutter} aria-hidden="true">
        {Array.from({ length: lines }, (_, k) => {
          const problem = problems.get(k + 1);
          return (
            <div key={k} class={problem === undefined ? undefined : 'json-problem-line'} title={problem}>
              {problem === undefined ? k + 1 : `⚠ ${k + 1}`}
            </div>
          );
        })}
      </div>
      <textarea
        ref={area}
        aria-label="Pipeline JSON"
        aria-describedby={describedBy}
        aria-invalid={problems.size > 0 ? 'true' : undefined}
        spellcheck={false}
        autocomplete="off"
        wrap="off"
        rows={Math.min(28, Math.max(14, lines + 1))}
        placeholder="Paste a pipeline's JSON here, upload a file, or pick an example above."
        value={value}
        onInput={(event) => onInput(event.currentTarget.value)}
        onScroll={(event) => {
          if (gutter.current !== null) gutter.current.scrollTop = event.currentTarget.scrollTop;
        }}
      />
    </div>
  );
}

/**
 * The create page (`/create`): a pipeline's JSON, pasted, uploaded or one of the examples, its graph
 * previewed as it is typed, and `POST /pipelines` on submit. The API's validation errors are shown where
 * they point: on their line of the JSON, and on the graph's node or edge they name. A created pipeline
 * opens its job page.
 */
import { useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, createPipeline } from '../api.js';
import { PipelineGraph, type GraphEdgeView, type GraphNodeView } from '../components/pipeline-graph.js';
import { navigate, type PageProps } from '../router.js';
import type { CreatePipelineBody } from '../types.js';
import { graphPartOf, splitApiError, type FieldError } from './create/api-errors.js';
import { EXAMPLES } from './create/examples.js';
import { JsonEditor } from './create/json-editor.js';
import { findPath, JsonSyntaxError, locatePaths, type JsonLocation } from './create/json-locate.js';

type Parsed =
  | { kind: 'empty' }
  | { kind: 'json'; value: unknown; locations: Map<string, JsonLocation> }
  | { kind: 'invalid'; error: string; line: number | null };

function parse(text: string): Parsed {
  if (text.trim() === '') return { kind: 'empty' };
  try {
    const locations = locatePaths(text);
    return { kind: 'json', value: JSON.parse(text) as unknown, locations };
  } catch (err) {
    if (err instanceof JsonSyntaxError) return { kind: 'invalid', error: err.message, line: err.location.line };
    return { kind: 'invalid', error: err instanceof Error ? err.message : String(err), line: null };
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** What the preview can draw of a pipeline that may not be valid yet: anything node- or edge-shaped. */
function graphOf(value: unknown): { nodes: GraphNodeView[]; edges: GraphEdgeView[] } {
  const pipeline = isObject(value) ? value : {};
  const graph = isObject(pipeline['graph']) ? pipeline['graph'] : {};
  const override = typeof pipeline['parallelism'] === 'number' ? pipeline['parallelism'] : undefined;
  const nodes = (Array.isArray(graph['nodes']) ? graph['nodes'] : []).filter(isObject).map((node, k) => ({
    id: typeof node['id'] === 'string' ? node['id'] : `#${k}`,
    operator: typeof node['operator'] === 'string' ? node['operator'] : '?',
    parallelism: override ?? (typeof node['parallelism'] === 'number' ? node['parallelism'] : 1),
  }));
  const edges = (Array.isArray(graph['edges']) ? graph['edges'] : []).filter(isObject).map((edge) => ({
    from: String(edge['from']),
    to: String(edge['to']),
    kind: typeof edge['kind'] === 'string' ? edge['kind'] : '?',
  }));
  return { nodes, edges };
}

interface Located extends FieldError {
  line: number | null;
  /** The node or edge it names, as the preview labels it. */
  target: string | null;
}

export default function CreatePage(_props: PageProps) {
  const [text, setText] = useState('');
  const [apiErrors, setApiErrors] = useState<FieldError[]>([]);
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [source, setSource] = useState<string | null>(null);
  const reveal = useRef<((line: number) => void) | null>(null);

  const parsed = useMemo(() => parse(text), [text]);
  const { nodes, edges } = useMemo(() => (parsed.kind === 'json' ? graphOf(parsed.value) : { nodes: [], edges: [] }), [parsed]);

  // The API's problems placed on the current text: their line, and the node or edge they name.
  const located: Located[] = apiErrors.map((error) => {
    const location = parsed.kind === 'json' && error.path !== null ? findPath(parsed.locations, error.path) : undefined;
    const part = graphPartOf(error.path);
    let target: string | null = null;
    if (part?.kind === 'node') target = nodes[part.index] === undefined ? null : `node ${nodes[part.index]?.id}`;
    if (part?.kind === 'edge') {
      const edge = edges[part.index];
      target = edge === undefined ? null : `edge ${edge.from} → ${edge.to}`;
    }
    return { ...error, line: location?.line ?? null, target };
  });
  const problems = new Map<number, string>();
  if (parsed.kind === 'invalid' && parsed.line !== null) problems.set(parsed.line, parsed.error);
  for (const error of located) if (error.line !== null) problems.set(error.line, [problems.get(error.line), error.message].filter(Boolean).join('; '));
  const nodeProblems = new Map<number, string>();
  const edgeProblems = new Map<number, string>();
  for (const error of apiErrors) {
    const part = graphPartOf(error.path);
    if (part === null) continue;
    const map = part.kind === 'node' ? nodeProblems : edgeProblems;
    map.set(part.index, [map.get(part.index), error.message].filter(Boolean).join('; '));
  }
  const shownNodes = nodes.map((node, k) => ({ ...node, problem: nodeProblems.get(k) }));
  const shownEdges = edges.map((edge, k) => ({ ...edge, problem: edgeProblems.get(k) }));

  const load = (next: string, from: string) => {
    setText(next);
    setSource(from);
    setApiErrors([]);
    setFailure(null);
  };

  const submit = async () => {
    if (parsed.kind !== 'json') return;
    setBusy(true);
    setFailure(null);
    try {
      const created = await createPipeline(parsed.value as CreatePipelineBody);
      navigate(`/jobs/${encodeURIComponent(created.id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        setApiErrors(splitApiError(err.message));
      } else {
        setApiErrors([]);
        setFailure(err instanceof Error ? err.message : String(err));
      }
    } finally {
      setBusy(false);
    }
  };

  const errorCount = (parsed.kind === 'invalid' ? 1 : 0) + located.length;

  return (
    <section class="create">
      <div class="page-head">
        <h1>Create a pipeline</h1>
      </div>
      <p class="muted">
        A pipeline is the JSON that <code>weir submit</code> takes: a <code>name</code>, a <code>graph</code> of nodes (operator, parallelism, config) and
        edges (<code>forward</code> or <code>shuffle</code>), optionally <code>parallelism</code> for every node and <code>checkpoint_interval_micros</code>.
      </p>

      <div class="create-sources">
        <div role="group" aria-labelledby="examples-label" class="create-examples">
          <span id="examples-label">Examples:</span>
          {EXAMPLES.map((example) => (
            <button key={example.name} type="button" class="secondary" title={example.about} aria-pressed={source === `example:${example.name}`} onClick={() => load(example.text, `example:${example.name}`)}>
              {example.name}
            </button>
          ))}
        </div>
        <label class="create-file">
          Upload a JSON file
          <input
            type="file"
            accept=".json,application/json"
            onChange={(event) => {
              const input = event.currentTarget;
              const file = input.files?.[0];
              if (file === undefined) return;
              file
                .text()
                .then((content) => load(content, `file:${file.name}`))
                .catch((err: unknown) => setFailure(`${file.name} could not be read: ${err instanceof Error ? err.message : String(err)}`))
                .finally(() => {
                  input.value = '';
                });
            }}
          />
        </label>
      </div>

      <form
        onSubmit={(event) => {
          event.preventDefault();
          void submit();
        }}
      >
        <div class="create-grid">
          <div class="create-json">
            <JsonEditor
              value={text}
              onInput={(next) => {
                setText(next);
                setSource(null);
              }}
              problems={problems}
              describedBy="create-problems"
              revealRef={reveal}
            />
          </div>
          <div class="create-preview">
            <h2>Preview</h2>
            {parsed.kind === 'json' && nodes.length > 0 ? (
              <div data-testid="create-preview">
                <PipelineGraph nodes={shownNodes} edges={shownEdges} label={`Graph of ${isObject(parsed.value) && typeof parsed.value['name'] === 'string' ? parsed.value['name'] : 'the pipeline'}`} />
              </div>
            ) : (
              <p class="muted">{parsed.kind === 'invalid' ? 'The JSON has a syntax error; the graph shows once it parses.' : 'The graph shows here once the JSON has nodes.'}</p>
            )}
          </div>
        </div>

        <div id="create-problems" aria-live="polite">
          {errorCount > 0 && (
            <div class="notice error create-errors" role="alert" data-testid="create-errors">
              <p>{parsed.kind === 'invalid' ? 'This is not JSON yet:' : `The API refused the pipeline (${located.length} ${located.length === 1 ? 'problem' : 'problems'}):`}</p>
              <ul>
                {parsed.kind === 'invalid' && (
                  <li>
                    {parsed.line !== null && <LineButton line={parsed.line} reveal={reveal} />} {parsed.error}
                  </li>
                )}
                {located.map((error, k) => (
                  <li key={k} data-path={error.path ?? undefined}>
                    {error.line !== null && <LineButton line={error.line} reveal={reveal} />}
                    {error.target !== null && <span class="create-target">{error.target}</span>}
                    {error.path !== null && error.path !== '(root)' && <code>{error.path}</code>}
                    {error.path !== null && error.path !== '(root)' ? ': ' : ''}
                    {error.message}
                  </li>
                ))}
              </ul>
            </div>
          )}
        </div>
        {failure !== null && <p class="notice error">{failure}</p>}

        <div class="actions create-actions">
          <button type="submit" disabled={busy || parsed.kind !== 'json'} aria-busy={busy}>
            {busy ? 'Creating…' : 'Create pipeline'}
          </button>
        </div>
      </form>
    </section>
  );
}

function LineButton({ line, reveal }: { line: number; reveal: { current: ((line: number) => void) | null } }) {
  return (
    <button type="button" class="link" onClick={() => reveal.current?.(line)} title="Select this line in the JSON">
      line {line}
    </button>
  );
}

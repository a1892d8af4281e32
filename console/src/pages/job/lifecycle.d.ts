/**
 * `virtual:job-lifecycle`, which console/vite.config.ts generates at build time from the job statechart
 * (scripts/diagram.ts's `lifecycleOverview`): the overview diagram of docs/job-lifecycle.md as data.
 */
declare module 'virtual:job-lifecycle' {
  /** The top-level states in the machine's order: name, Mermaid id, whether final. */
  export const states: ReadonlyArray<{ name: string; id: string; final: boolean }>;
  export const initial: string | null;
  /** Edges between top-level states in the diagram's order, each with the `event [guard]` labels of the transitions it stands for. */
  export const edges: ReadonlyArray<{ from: string; to: string; labels: readonly string[] }>;
  /** `stateDiagram-v2` without transition labels; its relations: `[*] --> initial`, then `edges`, then `final --> [*]`. */
  export const mermaid: string;
}

/** Vite's `?raw` imports: the file's text, bundled at build time (examples.ts). */
declare module '*?raw' {
  const text: string;
  export default text;
}

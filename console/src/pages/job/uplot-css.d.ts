/** uPlot's stylesheet, which metrics.tsx imports for its side effect (Vite emits it as a same-origin CSS file). */
declare module 'uplot/dist/uPlot.min.css';

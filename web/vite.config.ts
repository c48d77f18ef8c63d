import { defineConfig } from "vite";

// `npm run dev` serves the page on :5173 and calls the gateway cross-origin
// (VITE_VIDGEN_API, default http://127.0.0.1:8000; the gateway allows this origin by CORS
// outside production). `npm run build` writes dist/, which the gateway serves at /.
export default defineConfig({
  build: { target: "es2022", sourcemap: false, assetsInlineLimit: 0 },
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
});

// Builds the web app (index.html → dist/), which the API serves at `/`.
// Everything is bundled: the app must work offline, with no CDN at run time.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    // `npm run dev` against a local `lumalive up` (default port 8000).
    proxy: { "/api": process.env.LUMALIVE_API_URL ?? "http://127.0.0.1:8000" },
  },
});

// The client's tests run against a live backend (LUMALIVE_API_URL and the users'
// tokens come from tests/system/test_web_client.py), never against mocks of it.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [react()],
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // One backend, shared users: files run one after another.
    fileParallelism: false,
  },
});

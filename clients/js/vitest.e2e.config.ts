import { defineConfig } from "vitest/config";

// End-to-end: a real Tacit server and real Chromium; one file at a time (2-core machine).
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.e2e.test.ts"],
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 90_000,
    fileParallelism: false,
  },
});

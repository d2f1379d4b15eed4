import { defineConfig } from "vitest/config";

// Unit tests: pure functions and DOM logic in happy-dom (no network, no browser).
export default defineConfig({
  test: { include: ["test/unit/**/*.test.ts"], environment: "happy-dom" },
});

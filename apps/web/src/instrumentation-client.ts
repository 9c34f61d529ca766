/**
 * Runs in the browser before the dashboard's own code (Next.js's client instrumentation hook). The pages'
 * Content-Security-Policy allows no eval (src/proxy.ts), and zod 4 probes for it with `new Function('')` the first
 * time it parses an object — a CSP violation on every page. jitless parsing makes it skip the probe (and the
 * compiled fast path, which the policy forbids anyway). Proven in Chromium by test/e2e/attacker.spec.ts.
 */
import { z } from 'zod';

z.config({ jitless: true });

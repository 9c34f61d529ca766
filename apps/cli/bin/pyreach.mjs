#!/usr/bin/env node
// Runs the TypeScript sources with tsx, resolved from this package (so it works from any directory).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');

#!/usr/bin/env node
// The weir command. Node 24 runs the TypeScript sources directly (type stripping).
import { main } from '../src/cli/main.ts';

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;

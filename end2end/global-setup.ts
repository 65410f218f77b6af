import { spawn } from 'node:child_process';
import * as path from 'node:path';

// Starts the worker process for the two-process run; the returned function stops it.
export default async function globalSetup() {
  const root = path.resolve(__dirname, '..');
  const bin = process.env.NODEBASE_BIN ?? 'target/debug/nodebase';
  const worker = spawn(bin, ['worker'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: process.env.E2E_RESOLVED_DATABASE_URL, RUST_LOG: 'info' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    worker.once('spawn', resolve);
    worker.once('error', reject);
  });
  worker.once('exit', (code) => {
    if (code !== null && code !== 0) console.error(`worker process exited with ${code}`);
  });
  return async () => {
    worker.kill('SIGTERM');
  };
}

import { defineConfig } from '@playwright/test';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';

// Each run gets a fresh SQLite database, so tests never see another run's data.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodebase-e2e-'));
const port = Number(process.env.E2E_PORT ?? 3100);
const baseURL = `http://127.0.0.1:${port}`;
const server = process.env.NODEBASE_BIN ?? 'target/debug/nodebase';
const databaseUrl = process.env.E2E_DATABASE_URL ?? `sqlite://${dataDir}/nodebase.db`;
// With E2E_TWO_PROCESSES=1 the pages are served by a web-only process and the runs are
// executed by a separate worker process (started in global-setup.ts).
const twoProcesses = process.env.E2E_TWO_PROCESSES === '1';
process.env.E2E_RESOLVED_DATABASE_URL = databaseUrl;

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: true,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL,
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  globalSetup: twoProcesses ? require.resolve('./global-setup.ts') : undefined,
  webServer: {
    command: twoProcesses ? `${server} serve --role web` : server,
    cwd: '..',
    url: `${baseURL}/signin`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      DATABASE_URL: databaseUrl,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: 'target/site',
      LEPTOS_OUTPUT_NAME: 'nodebase',
      RUST_LOG: 'info',
      // The suite signs up more users from 127.0.0.1 than a person would.
      NODEBASE_SIGN_UPS_PER_HOUR: '1000',
      // As behind a reverse proxy: the tests play clients at other addresses by
      // setting this header (requests without it count as the peer, 127.0.0.1).
      NODEBASE_CLIENT_IP_HEADER: 'x-forwarded-for',
    },
  },
});

// Takes screenshots of the main pages for a look by eye:
//   node end2end/screenshots.mjs [base-url] [out-dir]
// against a running server (default http://127.0.0.1:3000, out-dir ./screenshots).
import { chromium } from '@playwright/test';
import * as fs from 'node:fs';

const base = process.argv[2] ?? 'http://127.0.0.1:3000';
const out = process.argv[3] ?? 'screenshots';
fs.mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
const page = await context.newPage();
const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });

await page.goto(`${base}/signin`);
await shot('signin');
await page.goto(`${base}/signup`);
await page.locator('body[data-hydrated]').waitFor();
await page.getByLabel('Email').fill(`shots-${Date.now()}@example.com`);
await page.getByLabel(/^Password/).fill('correct horse battery');
await page.getByRole('button', { name: 'Sign up' }).click();
await page.getByText('로그인한 사용자만 접근 가능').waitFor();
await page.locator('body[data-hydrated]').waitFor();
await shot('home-empty');
await page.getByRole('button', { name: '워크플로우 생성' }).click();
await page.locator('.toast').first().waitFor();
await shot('home-toast');
await page.goto(`${base}/runs`);
await page.locator('tr.run-row').first().waitFor();
await shot('runs-list');
await page.locator('tr.run-row').first().getByRole('link').click();
await page.locator('li.step').first().waitFor();
await shot('run-mid-sleep');
await page.locator('.run-header .status[data-status="completed"]').waitFor({ timeout: 15000 });
await shot('run-completed');
await page.goto(`${base}/`);
await page.locator('.workflow-name', { hasText: 'workflow-from-inngest' }).waitFor({ timeout: 15000 });
await shot('home-after-run');
await page.goto(`${base}/events`);
await page.locator('li.event').first().waitFor();
await shot('events');
await page.goto(`${base}/functions`);
await page.locator('article.function').first().waitFor();
await shot('functions');
await page.goto(`${base}/functions?range=day`);
await page.locator('article.function').first().waitFor();
await shot('functions-day');
await page.goto(`${base}/`);
await page.locator('body[data-hydrated]').waitFor();
await page.getByRole('button', { name: '워크플로우 생성' }).click();
await page.locator('.toast').first().waitFor();
await page.goto(`${base}/runs`);
await page.locator('tr.run-row').first().getByRole('link').click();
await page.locator('body[data-hydrated]').waitFor();
await page.locator('li.step').first().waitFor();
page.once('dialog', (dialog) => dialog.accept());
await page.getByRole('button', { name: 'Cancel run' }).click();
await page.locator('.cancelled-by').waitFor();
await shot('run-cancelled');
// approval-flow: the run page while it waits, and after the decision.
await page.goto(`${base}/functions`);
await page.locator('body[data-hydrated]').waitFor();
const approval = page.locator('article.function[data-function="approval-flow"]');
await approval.getByLabel('Invoke with data (JSON)').fill('{"request_id": "req-1"}');
await approval.getByRole('button', { name: 'Invoke' }).click();
await approval.getByRole('link', { name: /^run / }).click();
await page.locator('li.step[data-status="waiting"]').waitFor({ timeout: 15000 });
await shot('run-waiting');
const events = await context.newPage();
await events.goto(`${base}/events`);
await events.locator('body[data-hydrated]').waitFor();
await events.getByLabel('Name').fill('demo/approval.decided');
await events.getByLabel('Data (JSON)').fill('{"request_id": "req-1", "approved": true}');
await events.getByRole('button', { name: 'Send event' }).click();
await page.locator('.run-header .status[data-status="completed"]').waitFor({ timeout: 15000 });
await shot('run-wait-matched');
await page.goto(`${base}/runs`);
await page.setViewportSize({ width: 390, height: 800 });
await shot('home-phone');
await browser.close();
console.log(`screenshots in ${out}/`);

import { test, expect } from '@playwright/test';
import { hydrated, newEmail, signUp, watchConsole } from './helpers';

test('approval-flow waits on its run page for the decision sent from the events page, live', async ({ page, context }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('approval'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="approval-flow"]');
  await expect(card.locator('.description')).toContainText('Waits up to 1 hour');
  await expect(card).toContainText('demo/approval.decided');

  const requestId = `req-${Date.now()}`;
  await card.getByLabel('Invoke with data (JSON)').fill(JSON.stringify({ request_id: requestId }));
  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
  await hydrated(page);

  // The run is parked on its wait, which says what it waits for and until when.
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'sleeping', { timeout: 15_000 });
  const step = page.locator('li.step[data-step="wait for the decision"]');
  await expect(step).toHaveAttribute('data-status', 'waiting');
  const rule = step.locator('.wait-rule');
  await expect(rule).toContainText('demo/approval.decided');
  await expect(rule).toContainText(`data.request_id = "${requestId}"`);
  await expect(rule).toContainText('times out at');

  // Someone decides, on another page.
  const events = await context.newPage();
  await events.goto('/events');
  await hydrated(events);
  await events.getByLabel('Name').fill('demo/approval.decided');
  await events.getByLabel('Data (JSON)').fill(JSON.stringify({ request_id: requestId, approved: true }));
  await events.getByRole('button', { name: 'Send event' }).click();
  await expect(events.locator('.toast').filter({ hasText: '이벤트 전송됨' })).toBeVisible();

  // The run page, never reloaded, shows the wait ended by that event and the output.
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(step).toHaveAttribute('data-status', 'completed');
  await expect(rule).toHaveAttribute('data-wait', 'matched');
  await expect(rule.getByRole('link')).toBeVisible();
  await expect(page.locator('.two-col')).toContainText('"approved": true');

  // The link opens the events page with the decision first.
  await rule.getByRole('link').click();
  await expect(page).toHaveURL(/\/events\?before=/);
  await expect(page.locator('li.event').first().locator('.event-name')).toHaveText('demo/approval.decided');
  expect(errors).toEqual([]);
});

test('fan-out sends its items once, in one step whose events are linked from the run page', async ({ page }) => {
  await signUp(page, newEmail('fanout'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="fan-out"]');
  await card.getByLabel('Invoke with data (JSON)').fill('{"count": 3}');
  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await hydrated(page);
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  const step = page.locator('li.step[data-step="send the items"]');
  await expect(step.locator('.step-kind')).toHaveText('send');
  await expect(step.locator('.sent-events')).toContainText('sent 3 events');
  await expect(step.locator('a.sent-event')).toHaveCount(3);
  await expect(page.locator('.two-col')).toContainText('"sent": 3');

  // Each item ran, for this user.
  await page.goto('/functions');
  const items = page.locator('article.function[data-function="fan-out-item"]');
  await expect(items.locator('.counts')).toContainText('3', { timeout: 15_000 });
});

test('parent-invokes-child returns the child\'s output, and the two run pages link each other', async ({ page }) => {
  await signUp(page, newEmail('invoke-child'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="parent-invokes-child"]');
  await card.getByLabel('Invoke with data (JSON)').fill('{"n": 21}');
  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await hydrated(page);
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(page.locator('.two-col')).toContainText('"doubled": 42');
  const parentUrl = page.url();
  const step = page.locator('li.step[data-step="ask the child"]');
  await expect(step.locator('.step-kind')).toHaveText('invoke');
  await step.locator('a.invoked-run').click();
  await expect(page.locator('.run-header h1')).toHaveText('child-doubles');
  await expect(page.locator('.two-col')).toContainText('"n": 21');
  await page.locator('a.invoked-by').click();
  await expect(page).toHaveURL(parentUrl);
});

test('a failing function\'s failure handler runs as its own run, linked both ways', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('on-failure'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="fails-on-purpose"]');
  await expect(card.locator('.on-failure')).toHaveText('fails-on-purpose-on-failure');
  const handler = page.locator('article.function[data-function="fails-on-purpose-on-failure"]');
  await expect(handler.locator('.handles')).toContainText('a run of fails-on-purpose fails');
  await expect(handler.getByRole('button', { name: 'Invoke' })).toHaveCount(0);

  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await hydrated(page);
  const failedUrl = page.url();
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'failed', { timeout: 15_000 });
  await expect(page.locator('.two-col')).toContainText('this function fails on purpose');
  await page.locator('a.failure-handler').click();
  await expect(page.locator('h1')).toHaveText('fails-on-purpose-on-failure');
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(page.locator('.two-col')).toContainText('"error": "this function fails on purpose"');
  await page.locator('a.failure-of').click();
  await expect(page).toHaveURL(failedUrl);
  expect(errors).toEqual([]);
});

test('withdrawing an approval request cancels its waiting run, which names the event', async ({ page, context }) => {
  await signUp(page, newEmail('withdrawn'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="approval-flow"]');
  await expect(card.locator('.cancelled-by')).toContainText('demo/approval.withdrawn (matching data.request_id)');
  const requestId = `req-${Date.now()}`;
  await card.getByLabel('Invoke with data (JSON)').fill(JSON.stringify({ request_id: requestId }));
  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await hydrated(page);
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'sleeping', { timeout: 15_000 });

  const events = await context.newPage();
  await events.goto('/events');
  await hydrated(events);
  await events.getByLabel('Name').fill('demo/approval.withdrawn');
  await events.getByLabel('Data (JSON)').fill(JSON.stringify({ request_id: requestId }));
  await events.getByRole('button', { name: 'Send event' }).click();
  await expect(events.locator('.toast').filter({ hasText: '이벤트 전송됨' })).toBeVisible();

  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'cancelled', { timeout: 15_000 });
  await expect(page.locator('dd.cancelled-by')).toContainText('by event ');
  await page.locator('dd.cancelled-by a').click();
  await expect(page.locator('li.event').first().locator('.event-name')).toHaveText('demo/approval.withdrawn');
});

test('minutely-report shows its cron schedule and when it next ticks', async ({ page }) => {
  await signUp(page, newEmail('cron'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="minutely-report"]');
  await expect(card.locator('.schedule')).toContainText('* * * * * (UTC)');
  await expect(card.locator('.schedule')).toContainText('next at');
  await expect(card.locator('.last-tick')).toBeVisible();
});

import { test, expect, Page } from '@playwright/test';
import { hydrated, newEmail, sendEvents, signUp, watchConsole } from './helpers';

/** Sends `name` with `data` from the Events page and waits for its toast. */
async function sendEvent(page: Page, name: string, data: object): Promise<void> {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Data (JSON)').fill(JSON.stringify(data));
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.locator('.toast').filter({ hasText: '이벤트 전송됨' }).last()).toBeVisible();
}

test('per-user-serial runs one user\'s sends one after the other, shown "queued: concurrency", and another user\'s beside them', async ({ page, context, browser }) => {
  const errors = watchConsole(page);
  // The other user is ready first, so that their send can follow this user's at once.
  const other = await (await browser.newContext()).newPage();
  await signUp(other, newEmail('serial-other'));
  await other.goto('/events');
  await hydrated(other);

  await signUp(page, newEmail('serial'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="per-user-serial"]');
  await expect(card.locator('.concurrency')).toContainText('1 at once per event.user_id');

  // Sent from another tab; the runs page, opened after, follows the runs live.
  const sender = await context.newPage();
  await sender.goto('/events');
  await hydrated(sender);
  await sendEvent(sender, 'demo/serial', { n: 1 });
  await sendEvent(sender, 'demo/serial', { n: 2 });
  await page.goto('/runs?function=per-user-serial');
  await hydrated(page);

  const rows = page.locator('tr.run-row');
  await expect(rows).toHaveCount(2);
  // Newest first: the second send waits behind the first, and says why.
  await expect(rows.nth(1).locator('.status')).toHaveAttribute('data-status', 'running');
  await expect(rows.nth(0).locator('.status')).toHaveAttribute('data-status', 'queued');
  await expect(rows.nth(0).locator('td').first()).toHaveText(/queued: concurrency/);
  await expect(rows.nth(0).locator('.held-back')).toHaveAttribute('title', /1 at once per event\.user_id/);

  // Another user's run starts while this user's second still waits.
  await sendEvent(other, 'demo/serial', { n: 1 });
  await other.goto('/runs?function=per-user-serial');
  await expect(other.locator('tr.run-row')).toHaveCount(1);
  await expect(other.locator('tr.run-row .status')).toHaveAttribute('data-status', /running|completed/);

  // The page refetches by itself: the second runs once the first is done, then both end.
  await expect(rows.nth(0).locator('.status')).toHaveAttribute('data-status', /running|completed/, { timeout: 15_000 });
  await expect(rows.nth(1).locator('.status')).toHaveAttribute('data-status', 'completed');
  await expect(rows.nth(0).locator('.held-back')).toHaveCount(0);
  await expect(rows.nth(0).locator('.status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  expect(errors).toEqual([]);
});

test('five quick demo/typing sends make one debounced-summary run, with the last text', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('debounce'));
  await page.goto('/functions');
  await hydrated(page);
  await expect(page.locator('article.function[data-function="debounced-summary"] .debounce')).toContainText('3s per user');

  await page.goto('/events');
  await hydrated(page);
  for (const text of ['h', 'he', 'hel', 'hell', 'hello']) {
    await sendEvent(page, 'demo/typing', { text });
  }

  await page.goto('/runs?function=debounced-summary');
  await hydrated(page);
  const rows = page.locator('tr.run-row');
  await expect(rows).toHaveCount(1);
  // Until the burst has been quiet for 3 s, the one run waits, saying why.
  const first = rows.first();
  if ((await first.locator('.status').getAttribute('data-status')) === 'queued') {
    await expect(first.locator('td').first()).toHaveText(/queued: debounced/);
  }
  await expect(first.locator('.status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(first.locator('.held-back')).toHaveCount(0);
  await expect(rows).toHaveCount(1);

  await first.getByRole('link').click();
  await hydrated(page);
  await expect(page.locator('.two-col')).toContainText('"text": "hello"');
  expect(errors).toEqual([]);
});

test('batched-digest gathers three quick demo/note sends into one run and starts a fourth alone after 5 s, "queued: waiting for batch" until then', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('batch'));
  await page.goto('/functions');
  await hydrated(page);
  await expect(page.locator('article.function[data-function="batched-digest"] .batch'))
    .toContainText('up to 3 events or 5s per user');

  await page.goto('/events');
  await hydrated(page);
  for (const text of ['milk', 'eggs', 'bread', 'tea']) {
    await sendEvent(page, 'demo/note', { text });
  }

  await page.goto('/runs?function=batched-digest');
  await hydrated(page);
  const rows = page.locator('tr.run-row');
  await expect(rows).toHaveCount(2);
  // Newest first: the full batch ran at once; the fourth note's batch waits, saying why.
  await expect(rows.nth(1).locator('.status')).toHaveAttribute('data-status', 'completed');
  const open = rows.nth(0);
  if ((await open.locator('.status').getAttribute('data-status')) === 'queued') {
    await expect(open.locator('td').first()).toHaveText(/queued: waiting for batch/);
    await expect(open.locator('.held-back')).toHaveAttribute('title', /1 of up to 3 events or 5s per user/);
  }
  // The page refetches by itself when the partial batch's 5 s are up.
  await expect(open.locator('.status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(rows).toHaveCount(2);

  await rows.nth(1).getByRole('link').click();
  await hydrated(page);
  await expect(page.locator('.two-col')).toContainText('"milk"');
  await expect(page.locator('.two-col')).toContainText('"bread"');
  await expect(page.locator('.two-col')).not.toContainText('"tea"');
  expect(errors).toEqual([]);
});

test('throttled-api starts two sends per 10 s, shows the third "queued: throttled" until when, live, and starts it by itself', async ({ page, context }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('throttle'));
  await page.goto('/functions');
  await hydrated(page);
  await expect(page.locator('article.function[data-function="throttled-api"] .throttle'))
    .toContainText('2 starts per 10s per event.user_id');

  const sender = await context.newPage();
  await sender.goto('/events');
  await hydrated(sender);
  for (const n of [1, 2]) {
    await sendEvent(sender, 'demo/api-call', { n });
  }
  await page.goto('/runs?function=throttled-api');
  await hydrated(page);
  const rows = page.locator('tr.run-row');
  await expect(rows).toHaveCount(2);
  // The third send, from the other tab, shows up on the open runs page without a
  // reload, though it does not start.
  await sendEvent(sender, 'demo/api-call', { n: 3 });
  await expect(rows).toHaveCount(3);
  // Newest first: the first two sends have run; the third waits for the window.
  await expect(rows.nth(2).locator('.status')).toHaveAttribute('data-status', 'completed');
  await expect(rows.nth(1).locator('.status')).toHaveAttribute('data-status', 'completed');
  const third = rows.nth(0);
  await expect(third.locator('.status')).toHaveAttribute('data-status', 'queued');
  await expect(third.locator('td').first()).toHaveText(/queued: throttled/);
  await expect(third.locator('.held-back')).toHaveAttribute('title', /2 starts per 10s per event\.user_id\): not before \d/);

  // Its run page says what it waits for and until when.
  await third.getByRole('link').click();
  await hydrated(page);
  await expect(page.locator('.held-back-why')).toHaveText(/its throttle \(2 starts per 10s per event\.user_id\): not before \d/);

  // About 10 s after the first start it runs, and the page follows without a reload.
  await expect(page.locator('header .status')).toHaveAttribute('data-status', 'completed', { timeout: 20_000 });
  await expect(page.locator('.held-back-why')).toHaveCount(0);
  expect(errors).toEqual([]);
});

test('an urgent demo/serial send goes ahead of the sends its concurrency limit holds back', async ({ page, context }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('urgent'));
  await page.goto('/functions');
  await hydrated(page);
  await expect(page.locator('article.function[data-function="per-user-serial"] .priority'))
    .toContainText('head start of');

  // 1 runs (2 s). While it does, 2, 3 and 4 (urgent) are sent in one go, so that all
  // three wait at once however slow the sends are: 4 is put a minute ahead of 2 and 3.
  const sender = await context.newPage();
  await sender.goto('/events');
  await hydrated(sender);
  await sendEvent(sender, 'demo/serial', { n: 1 });
  await page.goto('/runs?function=per-user-serial');
  await hydrated(page);
  const rows = page.locator('tr.run-row');
  await expect(rows).toHaveCount(1);
  await expect(rows.nth(0).locator('.status')).toHaveAttribute('data-status', 'running');
  await sendEvents(sender, 'demo/serial', [{ n: 2 }, { n: 3 }, { n: 4, urgent: true }]);

  await expect(rows).toHaveCount(4);
  // Newest first. The urgent send runs right after the first, before 2 and 3.
  await expect(rows.nth(0).locator('.status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(rows.nth(3).locator('.status')).toHaveAttribute('data-status', 'completed');
  await expect(rows.nth(1).locator('.status')).toHaveAttribute('data-status', 'queued');
  await expect(rows.nth(2).locator('.status')).not.toHaveAttribute('data-status', 'completed');
  expect(errors).toEqual([]);
});

test('a second demo/digest send within the minute is skipped by the rate limit, and the Events page says so', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('ratelimit'));
  await page.goto('/functions');
  await hydrated(page);
  await expect(page.locator('article.function[data-function="rate-limited-digest"] .rate-limit'))
    .toContainText('1 run per 60s per event.user_id');

  await page.goto('/events');
  await hydrated(page);
  await sendEvent(page, 'demo/digest', { n: 1 });
  await sendEvent(page, 'demo/digest', { n: 2 });

  // Newest first: the second event ran nothing and says why; the first has its run.
  const events = page.locator('li.event');
  await expect(events.nth(0).locator('.skipped')).toHaveText(
    '↷ rate-limited-digest skipped: over the rate limit of 1 run per 60s per event.user_id');
  await expect(events.nth(1).locator('.triggered a')).toContainText('rate-limited-digest');
  await expect(events.nth(1).locator('.skipped')).toHaveCount(0);

  await page.goto('/runs?function=rate-limited-digest');
  await hydrated(page);
  await expect(page.locator('tr.run-row')).toHaveCount(1);
  await expect(page.locator('tr.run-row .status')).toHaveAttribute('data-status', 'completed');
  expect(errors).toEqual([]);
});

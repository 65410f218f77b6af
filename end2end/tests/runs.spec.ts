import { test, expect } from '@playwright/test';
import { createWorkflow, newEmail, sendEvents, signUp, watchConsole, hydrated } from './helpers';

const STEPS = ['비디오 가져오기', '비디오 → 텍스트 변환', 'OpenAI로 전송해서 요약/분석', 'create-workflow'];

test('the runs list follows a hello-world run live, and its page shows the four steps', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('runs'));
  await createWorkflow(page);

  await page.getByRole('link', { name: 'Runs' }).click();
  await expect(page).toHaveURL(/\/runs$/);
  const row = page.locator('tr.run-row').first();
  await expect(row).toContainText('hello-world');
  await expect(row).toContainText('test/hello.world');
  await page.evaluate(() => ((window as any).__noReload = true));
  // Sleeping or running now; completed a few seconds later, without a reload.
  await expect(row.locator('.status')).toHaveAttribute('data-status', /queued|running|sleeping/);
  await expect(row.locator('.status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(page.locator('[data-count-status="completed"] b')).toHaveText('1');
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);

  await row.getByRole('link').click();
  await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed');
  await expect(page.locator('li.step .step-name')).toHaveText(STEPS);
  for (const step of await page.locator('li.step').all()) {
    await expect(step.locator('.status')).toHaveAttribute('data-status', 'completed');
    await expect(step.locator('.step-duration')).toHaveText(/\d/);
  }
  // The three sleeps each took about a second.
  await expect(page.locator('li.step').first().locator('.step-duration')).toHaveText(/^1\.\d\d s$/);
  await expect(page.locator('.two-col pre.json').first()).toContainText('"userId"');
  expect(errors).toEqual([]);
});

test('a sleeping run can be cancelled from its page, which says who cancelled it', async ({ page }) => {
  const email = newEmail('cancel');
  await signUp(page, email);
  await createWorkflow(page);
  await page.goto('/runs');
  await page.locator('tr.run-row').first().getByRole('link').click();
  await hydrated(page);
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', /sleeping|running|queued/);
  await expect(page.locator('li.step').first()).toBeVisible();
  page.once('dialog', (dialog) => dialog.accept());
  await page.getByRole('button', { name: 'Cancel run' }).click();
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'cancelled');
  await expect(page.getByRole('button', { name: 'Re-run' })).toBeVisible();
  await expect(page.locator('.cancelled-by')).toContainText(`by ${email} at `);
  // The step it was sleeping in ended with the run, and says so.
  await expect(page.locator('li.step[data-status="sleeping"]')).toHaveCount(0);
  await expect(page.locator('li.step[data-status="failed"]').first()).toContainText('the run was cancelled');
  // It stays cancelled: the background step never creates the workflow.
  await page.waitForTimeout(3_500);
  await page.goto('/');
  await expect(page.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(1);
  await expect(page.locator('.workflow-name').filter({ hasText: 'workflow-from-inngest' })).toHaveCount(0);
});

test('the runs page charts the runs sent per minute, and the chart follows new sends live', async ({ page, context }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('chart'));
  await page.goto('/runs');
  await hydrated(page);
  const chart = page.locator('figure.sparkline');
  await expect(chart).toHaveAttribute('data-total', '0');
  await expect(chart.locator('.tick')).toHaveText(['1/min', '0', '−60 min', 'now']);
  await expect(chart.locator('rect.bar')).toHaveCount(0);
  await page.evaluate(() => ((window as any).__noReload = true));

  // Three runs sent from another tab: the chart counts them without a reload.
  const sender = await context.newPage();
  await sender.goto('/events');
  await hydrated(sender);
  await sendEvents(sender, 'demo/api-call', [{ n: 1 }, { n: 2 }, { n: 3 }]);

  await expect(chart).toHaveAttribute('data-total', '3');
  await expect(chart.locator('svg')).toHaveAttribute('aria-label', /^Runs sent per minute over the last 60 minutes: 3 in all/);
  await expect(chart.locator('figcaption')).toContainText('last 60 min: 3 in all');
  // One bar per minute that had runs: the current one, or two if a minute turned.
  const counts = await chart.locator('rect.bar').evaluateAll((bars) => bars.map((b) => Number(b.getAttribute('data-count'))));
  expect(counts.reduce((a, b) => a + b, 0)).toBe(3);
  expect(counts.length).toBeLessThanOrEqual(2);
  await expect(chart.locator('.tick').first()).toHaveText(counts.length === 1 ? '5/min' : '2/min');
  await chart.screenshot({ path: 'test-results/runs-sparkline.png' });
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  expect(errors).toEqual([]);
});

test('the functions page charts a function\'s runs of the last hour (or day) by outcome and latency, live', async ({ page, context }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('fncharts'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="throttled-api"]');
  await expect(card.locator('.no-activity')).toHaveText('No runs in the last hour.');
  await page.evaluate(() => ((window as any).__noReload = true));

  // Two runs from another tab: both start at once (the throttle allows 2 per 10 s).
  const sender = await context.newPage();
  await sender.goto('/events');
  await hydrated(sender);
  await sendEvents(sender, 'demo/api-call', [{ n: 1 }, { n: 2 }]);

  // The charts appear, and count them once they complete, without a reload.
  const outcomes = card.locator('figure.outcomes');
  await expect(outcomes).toHaveAttribute('data-completed', '2');
  await expect(outcomes).toHaveAttribute('data-failed', '0');
  await expect(outcomes.locator('.tick')).toHaveText(['2 runs', '0', '−60 min', '−30 min', 'now']);
  await expect(outcomes.locator('figcaption')).toContainText('2 completed');
  for (const kind of ['duration', 'delay']) {
    const chart = card.locator(`figure.latency[data-kind="${kind}"]`);
    await expect(chart).toHaveAttribute('data-points', /^[12]$/);
    await expect(chart.locator('circle.dot.p50').first()).toHaveAttribute('data-ms', /^\d+$/);
    await expect(chart.locator('.tick').first()).toHaveText(/\d+ ms|\d\.\d\d s/);
  }
  await expect(card.locator('figure.latency[data-kind="delay"] figcaption')).toContainText('Send → start: p50 p95 · latest');
  await card.locator('.charts').screenshot({ path: 'test-results/function-charts.png' });

  // The last day: the same runs, in spans of an hour, without a reload.
  await page.getByRole('link', { name: 'Last day' }).click();
  await expect(page).toHaveURL(/\/functions\?range=day$/);
  await expect(page.getByRole('link', { name: 'Last day' })).toHaveAttribute('aria-current', 'true');
  await expect(outcomes.locator('.tick')).toHaveText(['2 runs', '0', '−24 h', '−12 h', 'now']);
  await expect(outcomes.locator('figcaption')).toContainText('Runs sent per hour, by outcome: 2 completed');
  await card.locator('.charts').screenshot({ path: 'test-results/function-charts-day.png' });
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  expect(errors).toEqual([]);
});

test('sending an event with bad JSON shows the error; a good one lists the event and its run', async ({ page }) => {
  await signUp(page, newEmail('events'));
  await page.goto('/events');
  await hydrated(page);
  await page.getByLabel('Name').fill('test/hello.world');
  await page.getByLabel('Data (JSON)').fill('{"userId": ');
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.getByRole('alert')).toContainText('not valid JSON');

  await page.getByLabel('Name').fill('not a valid name');
  await page.getByLabel('Data (JSON)').fill('{}');
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.getByRole('alert')).toContainText('not a valid event name');

  await page.getByLabel('Name').fill('app/custom.thing');
  await page.getByLabel('Data (JSON)').fill(JSON.stringify({ note: 'x'.repeat(400) }));
  await page.getByRole('button', { name: 'Send event' }).click();
  const event = page.locator('li.event').first();
  await expect(event.locator('.event-name')).toHaveText('app/custom.thing');
  await expect(event).toContainText('triggered no function');
  // Long payloads are cut in the list, with the whole payload one click away.
  await expect(event.locator('pre.json')).not.toContainText('x'.repeat(400));
  await event.getByRole('button', { name: 'show all' }).click();
  await expect(event.locator('pre.json')).toContainText('x'.repeat(400));
});

test('an array of payloads sends one event each, all or none', async ({ page }) => {
  await signUp(page, newEmail('batch'));
  await page.goto('/events');
  await hydrated(page);
  await page.getByLabel('Name').fill('app/batch.item');
  await page.getByLabel('Data (JSON)').fill(JSON.stringify(Array.from({ length: 101 }, (_, n) => ({ n }))));
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.getByRole('alert')).toContainText('at most 100 events, not 101');
  await expect(page.getByText('No events yet.')).toBeVisible();

  await page.getByLabel('Data (JSON)').fill('[{"n": 1}, {"n": 2}, {"n": 3}]');
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.locator('.toast').filter({ hasText: '이벤트 3개 전송됨' })).toBeVisible();
  const events = page.locator('li.event');
  await expect(events).toHaveCount(3);
  await expect(events.locator('.event-name')).toHaveText(['app/batch.item', 'app/batch.item', 'app/batch.item']);
});

test('a function invoked from the functions page acts for the signed-in user, whatever the payload says', async ({ page }) => {
  await signUp(page, newEmail('invoke'));
  await page.goto('/functions');
  await hydrated(page);
  const card = page.locator('article.function[data-function="hello-world"]');
  await expect(card).toContainText('test/hello.world');
  await expect(card.locator('dd').nth(1)).toHaveText('5');
  await card.getByLabel('Invoke with data (JSON)').fill('{"userId": "someone-else"}');
  await card.getByRole('button', { name: 'Invoke' }).click();
  await card.getByRole('link', { name: /^run / }).click();
  await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
  await expect(page.locator('.run-header h1')).toHaveText('hello-world');
  // The payload's user id is ignored: the run works for the event's owner, who sent it.
  await expect(page.locator('.run-header .status')).toHaveAttribute('data-status', 'completed', { timeout: 15_000 });
  await expect(page.locator('.two-col')).toContainText('workflow-from-inngest');
  await page.goto('/');
  await expect(page.locator('.workflow-name').filter({ hasText: 'workflow-from-inngest' })).toHaveCount(1);
});

test("another user's run is not found, in the page and through the API", async ({ browser }) => {
  const alice = await browser.newPage();
  await signUp(alice, newEmail('owner'));
  await createWorkflow(alice);
  await alice.goto('/runs');
  await alice.locator('tr.run-row').first().getByRole('link').click();
  await expect(alice).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
  const url = alice.url();
  const runId = url.split('/').pop()!;

  const context = await browser.newContext();
  const bob = await context.newPage();
  await signUp(bob, newEmail('intruder'));
  await bob.goto(url);
  await expect(bob.getByRole('heading', { name: 'Run not found' })).toBeVisible();

  for (const fn of ['get_run', 'cancel_run', 'rerun_run']) {
    const response = await bob.request.post(`/api/${fn}`, { form: { id: runId } });
    expect(await response.text()).toContain('NotFound');
  }
  const list = await bob.request.post('/api/list_runs', { form: { search: runId } });
  expect(await list.text()).not.toContain(runId);
  await context.close();
});

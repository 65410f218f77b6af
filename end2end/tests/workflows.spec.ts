import { test, expect } from '@playwright/test';
import { newEmail, signUp, watchConsole } from './helpers';

test('creating a workflow answers at once with a toast and shows the new row', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('wf'));
  await expect(page.getByText('No workflows yet.')).toBeVisible();

  // A marker on window survives only if the page is never reloaded.
  await page.evaluate(() => ((window as any).__noReload = true));
  const button = page.getByRole('button', { name: '워크플로우 생성' });
  await button.click();

  await expect(page.locator('.toast').filter({ hasText: '작업 성공' })).toBeVisible();
  await expect(page.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(1);
  await expect(button).toBeEnabled();

  // Toasts stack, then fade away on their own.
  await button.click();
  await expect(page.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(2);
  await expect(page.locator('.toast')).toHaveCount(0, { timeout: 8_000 });

  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  expect(errors).toEqual([]);
});

test("one user never sees another user's workflows", async ({ browser }) => {
  const alice = await browser.newPage();
  await signUp(alice, newEmail('alice'));
  await alice.getByRole('button', { name: '워크플로우 생성' }).click();
  await expect(alice.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(1);

  const bobContext = await browser.newContext();
  const bob = await bobContext.newPage();
  await signUp(bob, newEmail('bob'));
  await expect(bob.getByText('No workflows yet.')).toBeVisible();
  await bobContext.close();
});

test('the background run adds workflow-from-inngest and the list refetches by itself', async ({ page }) => {
  const errors = watchConsole(page);
  await signUp(page, newEmail('live'));
  await page.evaluate(() => ((window as any).__noReload = true));
  await page.getByRole('button', { name: '워크플로우 생성' }).click();
  await expect(page.locator('.toast').filter({ hasText: '작업 성공' })).toBeVisible();
  await expect(page.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(1);
  // Three one-second durable sleeps, then the step that creates the workflow.
  await expect(page.locator('.workflow-name').filter({ hasText: 'workflow-from-inngest' })).toHaveCount(1, {
    timeout: 15_000,
  });
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  expect(errors).toEqual([]);
});

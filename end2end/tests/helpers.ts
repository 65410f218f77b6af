import { expect, Page } from '@playwright/test';

/** A new, unique email for each test user. */
export function newEmail(tag: string): string {
  return `${tag}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** Fails the test if the page logs an error (hydration mismatches show up here). */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  return errors;
}

/** Waits until the WASM has hydrated the server-rendered page. */
export async function hydrated(page: Page): Promise<void> {
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
}

/** Signs up a new user through the form and lands on the home page. */
export async function signUp(page: Page, email: string, password = 'correct horse battery'): Promise<void> {
  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByText('로그인한 사용자만 접근 가능')).toBeVisible();
}

/** Presses 워크플로우 생성 on the home page and waits for its toast. */
export async function createWorkflow(page: Page): Promise<void> {
  await page.goto('/');
  await hydrated(page);
  await page.getByRole('button', { name: '워크플로우 생성' }).click();
  await expect(page.locator('.toast').filter({ hasText: '작업 성공' })).toBeVisible();
}

/** Sends one `name` event per payload in one send from the Events page, and waits for its toast. */
export async function sendEvents(page: Page, name: string, payloads: object[]): Promise<void> {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Data (JSON)').fill(JSON.stringify(payloads));
  await page.getByRole('button', { name: 'Send event' }).click();
  await expect(page.locator('.toast').filter({ hasText: `이벤트 ${payloads.length}개 전송됨` })).toBeVisible();
}

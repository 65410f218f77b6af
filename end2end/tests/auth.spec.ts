import { test, expect } from '@playwright/test';
import { hydrated, newEmail, signUp, watchConsole } from './helpers';

test('an anonymous visitor is sent to sign-in', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/signin$/);
  await expect(page.getByRole('heading', { name: 'Nodebase 로그인' })).toBeVisible();
});

test('sign up, sign out, sign in again', async ({ page }) => {
  const errors = watchConsole(page);
  const email = newEmail('auth');
  await signUp(page, email);

  await page.getByRole('button', { name: '로그아웃' }).click();
  await expect(page).toHaveURL(/\/signin$/);

  // The session is gone: a fresh load of home goes back to sign-in.
  await page.goto('/');
  await expect(page).toHaveURL(/\/signin$/);

  await hydrated(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByText('로그인한 사용자만 접근 가능')).toBeVisible();
  expect(errors).toEqual([]);
});

test('bad credentials and bad input get a clear message on the form', async ({ page }) => {
  const email = newEmail('bad');
  await signUp(page, email);
  await page.getByRole('button', { name: '로그아웃' }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await hydrated(page);

  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('wrong email or password');

  await page.goto('/signup');
  await hydrated(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel(/^Password/).fill('another long password');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('already exists');

  await page.getByLabel('Email').fill('not-an-email');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('not a valid email address');

  await page.getByLabel('Email').fill(newEmail('short'));
  await page.getByLabel(/^Password/).fill('short');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expect(page.getByRole('alert')).toContainText('at least 8 characters');
});

test('repeated failed sign-ins are refused for a while', async ({ page }) => {
  const email = newEmail('lock');
  await signUp(page, email);
  await page.getByRole('button', { name: '로그아웃' }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await hydrated(page);
  for (let i = 0; i < 5; i++) {
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(`wrong password ${i}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toContainText('wrong email or password');
    await expect(page.getByRole('button', { name: 'Sign in' })).toBeEnabled();
  }
  // The sixth attempt is refused before any password is checked — even the right one.
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('too many attempts; try again in');
  await expect(page).toHaveURL(/\/signin$/);
});

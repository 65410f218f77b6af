import { test, expect } from '@playwright/test';
import { createWorkflow, newEmail, signUp } from './helpers';

// Server functions check the session themselves: calling them directly, without a
// cookie, must answer 401 and carry no data.
for (const fn of ['get_workflows', 'create_workflow', 'current_user']) {
  test(`POST /api/${fn} without a session is unauthorized`, async ({ request }) => {
    const response = await request.post(`/api/${fn}`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      data: '',
    });
    expect(response.status()).toBe(401);
    const body = await response.text();
    expect(body).toContain('Unauthorized');
    expect(body).not.toContain('test-workflow');
  });
}

test('a forged session cookie is unauthorized too', async ({ request }) => {
  const response = await request.post('/api/get_workflows', {
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: 'nodebase_session=forged-token',
    },
    data: '',
  });
  expect(response.status()).toBe(401);
});

// A page on another site can neither act with a visitor's session nor sign the visitor
// into another account: the browser says where the request comes from, and the server
// refuses it before any server function runs.
test('a cross-site POST with the victim\'s session is refused and changes nothing', async ({ page }) => {
  await signUp(page, newEmail('csrf'));
  for (const headers of [{ origin: 'http://evil.example' }, { 'sec-fetch-site': 'cross-site' }]) {
    const response = await page.request.post('/api/create_workflow', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      data: '',
    });
    expect(response.status()).toBe(403);
  }
  // Login CSRF: a cross-site sign-in form is refused too.
  const signIn = await page.request.post('/api/sign_in', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
    data: 'email=attacker%40example.com&password=whatever-it-is',
  });
  expect(signIn.status()).toBe(403);
  await page.goto('/');
  await expect(page.locator('.workflow-name')).toHaveCount(0);
  // The site's own pages still work.
  await createWorkflow(page);
  await expect(page.locator('.workflow-name').filter({ hasText: 'test-workflow' })).toHaveCount(1);
});

test('responses forbid framing and sniffing and keep the referrer on this site', async ({ request }) => {
  const response = await request.get('/signin');
  expect(response.status()).toBe(200);
  const headers = response.headers();
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['referrer-policy']).toBe('same-origin');
  expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
});

test('an open live stream ends once its session does, and cannot be reopened', async ({ page }) => {
  await signUp(page, newEmail('stream'));
  const closed = await page.evaluate(async () => {
    const source = new EventSource('/api/live');
    await new Promise((resolve, reject) => {
      source.onopen = resolve;
      setTimeout(() => reject(new Error('the stream did not open')), 5000);
    });
    await fetch('/api/sign_out', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
      redirect: 'manual',
    });
    // The server ends the stream; the browser's reconnect is refused (401) and it stops.
    const start = Date.now();
    while (source.readyState !== EventSource.CLOSED && Date.now() - start < 20_000) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return source.readyState === EventSource.CLOSED;
  });
  expect(closed).toBe(true);
});

test('the app\'s port serves no metrics', async ({ request }) => {
  const response = await request.get('/metrics', { maxRedirects: 0 });
  expect(response.status()).not.toBe(200);
  expect(await response.text()).not.toContain('nodebase_');
});

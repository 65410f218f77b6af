import { test, expect, Page } from '@playwright/test';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { hydrated, newEmail, signUp, watchConsole } from './helpers';

const PASSWORD = 'correct horse battery';

/**
 * Serves `html` from a server of its own on another port and opens it: at
 * `localhost` it is another site; at `127.0.0.1` a sibling origin of the same site
 * (the browser then sends the visitor's cookie along).
 */
async function attackerPage(page: Page, host: 'localhost' | '127.0.0.1', html: string): Promise<void> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  page.once('close', () => server.close());
  await page.goto(`http://${host}:${port}/attack`);
}

test('a cross-origin form cannot sign the visitor into another account', async ({ page, baseURL }) => {
  const attacker = newEmail('attacker');
  await signUp(page, attacker);
  await page.context().clearCookies();
  const refused = page.waitForResponse((r) => r.url().endsWith('/api/sign_in'));
  await attackerPage(
    page,
    'localhost',
    `<form id="f" method="post" action="${baseURL}/api/sign_in">
       <input name="email" value="${attacker}"><input name="password" value="${PASSWORD}">
     </form><script>document.getElementById('f').submit()</script>`,
  );
  const response = await refused;
  expect(response.status()).toBe(403);
  expect(await response.headerValue('set-cookie')).toBeNull();
  await page.goto('/');
  await expect(page).toHaveURL(/\/signin$/);
});

test("a cross-origin fetch cannot act with the visitor's session", async ({ page, baseURL }) => {
  await signUp(page, newEmail('victim'));
  for (const host of ['localhost', '127.0.0.1'] as const) {
    const refused = page.waitForResponse((r) => r.url().endsWith('/api/create_workflow'));
    await attackerPage(
      page,
      host,
      `<script>fetch('${baseURL}/api/create_workflow', {
         method: 'POST', mode: 'no-cors', credentials: 'include',
         headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' })</script>`,
    );
    expect((await refused).status(), host).toBe(403);
  }
  await page.goto('/');
  await hydrated(page);
  await expect(page.getByText('No workflows yet.')).toBeVisible();
});

test('pages run under a nonce policy: the app hydrates, foreign inline scripts do not run', async ({ page }) => {
  const errors = watchConsole(page);
  const response = await page.goto('/signin');
  const policy = response!.headers()['content-security-policy'];
  const nonce = /'nonce-([^']+)'/.exec(policy)?.[1];
  expect(nonce, policy).toBeTruthy();
  expect(policy).not.toContain("'unsafe-eval'");
  const scriptSrc = policy.split(';').find((d) => d.trim().startsWith('script-src'))!;
  expect(scriptSrc).not.toContain('unsafe-inline');
  expect(policy).toContain("script-src 'self' 'nonce-");
  expect(policy).toContain("frame-ancestors 'none'");
  await hydrated(page);
  expect(errors).toEqual([]);
  // Every inline script of the page carries this response's nonce.
  const nonces = await page.locator('script:not([src])').evaluateAll((s) =>
    s.map((el) => (el as HTMLScriptElement).nonce),
  );
  expect(nonces.length).toBeGreaterThan(0);
  expect(new Set(nonces)).toEqual(new Set([nonce]));
  // An injected inline script without it is blocked.
  await expect(page.addScriptTag({ content: 'window.injected = true' })).rejects.toThrow();
  expect(await page.evaluate(() => (window as any).injected)).toBeUndefined();
  // The next response gets a fresh nonce.
  const again = await page.request.get('/signin');
  expect(again.headers()['content-security-policy']).not.toContain(nonce!);
});

test('100 parallel wrong guesses then the right password: refused with 429, no session', async ({ page, request }) => {
  const email = newEmail('burst');
  await signUp(page, email);
  // From 100 addresses at once (behind the proxy that sets X-Forwarded-For), so that
  // only the email's own budget holds them back.
  const guesses = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      request.post('/api/sign_in', {
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-forwarded-for': `198.51.100.${i}`,
        },
        form: { email, password: `guess ${i}` },
      }),
    ),
  );
  const statuses = guesses.map((r) => r.status());
  expect(statuses.filter((s) => s === 400)).toHaveLength(5);
  expect(statuses.filter((s) => s === 429)).toHaveLength(95);
  const limited = guesses.find((r) => r.status() === 429)!;
  expect(Number(limited.headers()['retry-after'])).toBeGreaterThan(0);
  for (const r of guesses) expect(r.headers()['set-cookie']).toBeUndefined();

  const right = await request.post('/api/sign_in', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '203.0.113.5' },
    form: { email, password: PASSWORD },
  });
  expect(right.status()).toBe(429);
  expect(await right.text()).toContain('TooManyAttempts');
  expect(right.headers()['set-cookie']).toBeUndefined();
});

test('live streams per user are capped; past the cap the server answers 429', async ({ page, baseURL }) => {
  await signUp(page, newEmail('streams'));
  const cookie = (await page.context().cookies())
    .map((c) => `${c.name}=${c.value}`)
    .join('; ');
  // Not from the page: a browser opens at most six connections to one host.
  const requests: http.ClientRequest[] = [];
  const statuses = await Promise.all(
    Array.from(
      { length: 10 },
      () =>
        new Promise<number>((resolve, reject) => {
          const req = http.get(`${baseURL}/api/live`, { headers: { cookie } }, (res) => {
            resolve(res.statusCode ?? 0);
            if (res.statusCode !== 200) res.resume();
          });
          req.on('error', reject);
          requests.push(req);
        }),
    ),
  );
  requests.forEach((r) => r.destroy());
  // Eight in all are allowed; the home page may already hold one of them.
  const open = statuses.filter((s) => s === 200).length;
  expect([7, 8]).toContain(open);
  expect(statuses.filter((s) => s === 429)).toHaveLength(10 - open);
});

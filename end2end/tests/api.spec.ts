import { test, expect } from '@playwright/test';

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

// The device authorization grant through the Worker under workerd, driven by an OAuth
// client nobody here wrote (openid-client), against a real authorization server
// (oidc-provider) standing in for GitHub and Google.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as client from 'openid-client';

import { INGEST_KEY, enterUserCode, startAuthorizationServer, startWorker } from './support.mjs';

let as;
let worker;
let shortWorker;

before(async () => {
  as = await startAuthorizationServer();
  const providerVars = (githubClient) => ({
    GITHUB_CLIENT_ID: githubClient,
    GITHUB_DEVICE_URL: as.deviceUrl,
    GITHUB_TOKEN_URL: as.tokenUrl,
    GOOGLE_CLIENT_ID: 'pryx-google',
    GOOGLE_CLIENT_SECRET: 'google-client-secret',
    GOOGLE_DEVICE_URL: as.deviceUrl,
    GOOGLE_TOKEN_URL: as.tokenUrl,
    INGEST_TOKEN_KEY: INGEST_KEY,
  });
  worker = await startWorker(providerVars('pryx-github'));
  shortWorker = await startWorker(providerVars('pryx-short'));
});

after(async () => {
  await worker?.stop();
  await shortWorker?.stop();
  await as?.stop();
});

/**
 * openid-client with the Worker's endpoints for `provider`. The issuer and client id are the
 * authorization server's, so that ID tokens (which the Worker passes through) validate.
 */
function through(workerUrl, provider, clientId = `pryx-${provider}`) {
  const config = new client.Configuration(
    {
      issuer: as.issuer,
      device_authorization_endpoint: `${workerUrl}/auth/${provider}/device`,
      token_endpoint: `${workerUrl}/auth/${provider}/token`,
    },
    // The Worker sends its own client id whatever the client sends.
    clientId,
    undefined,
    client.None(),
  );
  client.allowInsecureRequests(config);
  return config;
}

const fast = { signal: AbortSignal.timeout(20_000) };

test('a github login through the worker yields a token and an ingest token', async () => {
  as.state.decide = 'approve';
  const config = through(worker.url, 'github');
  const device = await client.initiateDeviceAuthorization(config, { scope: 'openid offline_access' });
  assert.match(device.user_code, /^[A-Z]{4}-[A-Z]{4}$/);
  assert.ok(device.verification_uri.startsWith(as.issuer));
  assert.equal(typeof device.interval, 'number');
  const approved = await enterUserCode(as.issuer, device.user_code);
  assert.equal(approved.status, 200);
  const tokens = await client.pollDeviceAuthorizationGrant(config, { ...device, interval: 1 }, { install_id: 'install-test-0001' }, fast);
  assert.ok(tokens.access_token.length > 20);
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.ok(tokens.refresh_token, 'offline_access yields a refresh token');
  assert.match(tokens.pryx_ingest_token, /^pit1\.install-test-0001\.\d+\./);

  // The token is the authorization server's own.
  const stored = await as.provider.AccessToken.find(tokens.access_token);
  assert.equal(stored.accountId, 'octocat');
  assert.equal(stored.clientId, 'pryx-github');

  // Refreshing goes through the worker too.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, { install_id: 'install-test-0001' });
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.ok(await as.provider.AccessToken.find(refreshed.access_token));
});

test('google needs the client secret, which only the worker holds', async () => {
  as.state.decide = 'approve';
  const config = through(worker.url, 'google');
  const device = await client.initiateDeviceAuthorization(config, { scope: 'openid email' });
  await enterUserCode(as.issuer, device.user_code);
  const tokens = await client.pollDeviceAuthorizationGrant(config, { ...device, interval: 1 }, undefined, fast);
  const stored = await as.provider.AccessToken.find(tokens.access_token);
  assert.equal(stored.clientId, 'pryx-google');
  assert.ok(!('pryx_ingest_token' in tokens), 'no install id, no ingest token');
});

test('pending, denied and expired codes pass through as RFC 8628 errors', async () => {
  const config = through(worker.url, 'github');
  const device = await client.initiateDeviceAuthorization(config, { scope: 'openid' });

  const poll = (body, url = worker.url, provider = 'github') =>
    fetch(`${url}/auth/${provider}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(body),
    });
  const pending = await poll({ device_code: device.device_code });
  assert.equal(pending.status, 400);
  assert.equal((await pending.json()).error, 'authorization_pending');

  as.state.decide = 'deny';
  await enterUserCode(as.issuer, device.user_code);
  await assert.rejects(
    client.pollDeviceAuthorizationGrant(config, { ...device, interval: 1 }, undefined, fast),
    (error) => error.error === 'access_denied',
  );
  as.state.decide = 'approve';

  const shortConfig = through(shortWorker.url, 'github', 'pryx-short');
  const short = await client.initiateDeviceAuthorization(shortConfig, { scope: 'openid' });
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const expired = await poll({ device_code: short.device_code }, shortWorker.url);
  assert.equal(expired.status, 400);
  assert.equal((await expired.json()).error, 'expired_token');
});

test('the worker refuses what is not a device-flow request', async () => {
  const post = (path, init = {}) =>
    fetch(`${worker.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(init.headers ?? {}) },
      body: init.body ?? 'scope=openid',
      ...(init.method ? { method: init.method } : {}),
    });
  const unknown = await post('/auth/facebook/device');
  assert.equal(unknown.status, 404);

  const get = await fetch(`${worker.url}/auth/github/device`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');

  const preflight = await fetch(`${worker.url}/auth/github/token`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.status, 405);

  const fromPage = await post('/auth/github/device', { headers: { origin: 'https://evil.example' } });
  assert.equal(fromPage.status, 403);

  const big = await post('/auth/github/device', { body: `scope=${'a'.repeat(5000)}` });
  assert.equal(big.status, 413);

  const text = await post('/auth/github/device', { headers: { 'content-type': 'text/plain' } });
  assert.equal(text.status, 415);

  const password = await post('/auth/github/token', { body: 'grant_type=password&username=a&password=b' });
  assert.equal(password.status, 400);
  assert.equal((await password.json()).error, 'unsupported_grant_type');

  for (const response of [unknown, get, preflight, fromPage, big, text, password]) {
    assert.equal(response.headers.get('access-control-allow-origin'), null, 'CORS stays closed');
  }
});

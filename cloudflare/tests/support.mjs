// What the control plane's tests run: the built Worker under workerd (Miniflare), a real
// OAuth 2.0 authorization server with the device flow (oidc-provider) standing in for
// GitHub and Google, a "user" who approves or denies a code on it, and the OTLP receiver
// from tests/ that decodes with the official protobuf classes.
//
// Also a command line, for Pryx's Rust end-to-end tests:
//   node support.mjs authorization-server      prints {"issuer": ...} and serves
//   node support.mjs worker '<bindings json>'   prints {"url": ...} and serves
//   node support.mjs approve ISSUER USER_CODE   approves a code as the user would
//   node support.mjs deny ISSUER USER_CODE      says no to it
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Miniflare } from 'miniflare';
import Provider from 'oidc-provider';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKER_SCRIPT = path.join(here, '..', 'worker', 'build', 'index.js');
export const RECEIVER = path.join(here, '..', '..', 'tests', 'otlp_receiver.py');
export const INGEST_KEY = 'test-ingest-key-0123456789abcdef0123456789';

/** Starts the built Worker under workerd with these vars and secrets (all strings). */
export async function startWorker(bindings) {
  const mf = new Miniflare({
    modules: true,
    scriptPath: WORKER_SCRIPT,
    modulesRoot: path.dirname(WORKER_SCRIPT),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-01',
    bindings,
    host: '127.0.0.1',
    port: 0,
  });
  const url = (await mf.ready).href.replace(/\/$/, '');
  return { url, stop: () => mf.dispose() };
}

/**
 * Starts the built Worker in bare `workerd` (no Miniflare in front of it), as Cloudflare
 * runs it: for measuring what a request costs the Worker itself. Returns the process too.
 */
export async function startBareWorkerd(bindings) {
  const { mkdtempSync, writeFileSync, copyFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(path.join(tmpdir(), 'pryx-workerd-'));
  const build = path.dirname(WORKER_SCRIPT);
  copyFileSync(WORKER_SCRIPT, path.join(dir, 'index.js'));
  copyFileSync(path.join(build, 'index_bg.wasm'), path.join(dir, 'index_bg.wasm'));
  const port = await new Promise((resolve) => {
    const probe = http.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const text = Object.entries(bindings).map(([name, value]) => `(name = ${JSON.stringify(name)}, text = ${JSON.stringify(value)})`);
  writeFileSync(path.join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed "index.js"), (name = "index_bg.wasm", wasm = embed "index_bg.wasm")],
  compatibilityDate = "2026-04-01",
  bindings = [${text.join(', ')}],
  globalOutbound = "internet",
);
`);
  const workerd = path.join(here, 'node_modules', '.bin', 'workerd');
  const child = spawn(workerd, ['serve', path.join(dir, 'config.capnp')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      await fetch(`${url}/healthz`);
      return { url, pid: child.pid, stop: () => child.kill() };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  child.kill();
  throw new Error('workerd did not start');
}

/**
 * A device-flow authorization server. Clients: `pryx-github` (public, like GitHub's device
 * flow), `pryx-google` (confidential: its secret must arrive, as Google's must),
 * `pryx-short` (codes expire after two seconds) and `pryx-expiring` (access tokens live a
 * minute). `decide` says what the user answers.
 */
export async function startAuthorizationServer() {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const deviceGrants = ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'];
  const client = (id, extra) => ({
    client_id: id,
    grant_types: deviceGrants,
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'none',
    ...extra,
  });
  const provider = new Provider(issuer, {
    clients: [
      client('pryx-github'),
      client('pryx-google', { client_secret: 'google-client-secret', token_endpoint_auth_method: 'client_secret_post' }),
      client('pryx-short'),
      client('pryx-expiring'),
    ],
    features: { deviceFlow: { enabled: true }, devInteractions: { enabled: false }, introspection: { enabled: true } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    scopes: ['openid', 'offline_access', 'read:user', 'email', 'profile'],
    issueRefreshToken: () => true,
    findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    ttl: {
      DeviceCode: (ctx, token, client) => (client?.clientId === 'pryx-short' ? 2 : 600),
      // `pryx-expiring` tokens live a minute: inside Pryx's five-minute refresh margin.
      AccessToken: (ctx, token, client) => (client?.clientId === 'pryx-expiring' ? 60 : 3600),
      RefreshToken: 86400,
      Grant: 86400,
      Interaction: 600,
      Session: 86400,
    },
    cookies: { keys: ['test-cookie-key'] },
  });
  const state = { decide: 'approve', accountId: 'octocat' };
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (state.decide === 'deny') {
        return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user said no' });
      }
      if (details.prompt.name === 'login') {
        return provider.interactionFinished(req, res, { login: { accountId: state.accountId } }, { mergeWithLastSubmission: false });
      }
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const missing = details.prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } catch (error) {
      res.statusCode = 500;
      res.end(String(error));
    }
  });
  return {
    issuer,
    provider,
    state,
    deviceUrl: `${issuer}/device/auth`,
    tokenUrl: `${issuer}/token`,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A cookie-keeping browser that follows redirects by hand. */
class Browser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    for (let hops = 0; hops < 10; hops += 1) {
      const headers = { ...(init.headers ?? {}) };
      if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
      const response = await fetch(url, { ...init, headers, redirect: 'manual' });
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const at = pair.indexOf('=');
        this.cookies.set(pair.slice(0, at), pair.slice(at + 1));
      }
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        url = new URL(location, url).href;
        init = {};
        continue;
      }
      return { status: response.status, url, html: await response.text() };
    }
    throw new Error('too many redirects');
  }
}

function hiddenField(html, name) {
  const match = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!match) throw new Error(`no ${name} field in the page: ${html.slice(0, 300)}`);
  return match[1];
}

/**
 * Enters the user code on the authorization server's page and confirms it, or, with
 * `{ abort: true }`, says no there (oidc-provider answers the client `access_denied`).
 */
export async function enterUserCode(issuer, userCode, { abort = false } = {}) {
  const browser = new Browser();
  const form = (fields) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  const input = await browser.request(`${issuer}/device`);
  const xsrf = hiddenField(input.html, 'xsrf');
  const confirm = await browser.request(`${issuer}/device`, form({ xsrf, user_code: userCode }));
  const done = await browser.request(
    `${issuer}/device`,
    form({ xsrf: hiddenField(confirm.html, 'xsrf'), user_code: userCode, ...(abort ? { abort: 'yes' } : { confirm: 'yes' }) }),
  );
  return done;
}

/** Starts tests/otlp_receiver.py; `records()` reads what it decoded so far. */
export async function startReceiver(outFile) {
  const child = spawn('python3', [RECEIVER, outFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(readline.createInterface({ input: child.stdout }), 'line');
  return {
    url: `http://127.0.0.1:${line.trim()}/v1/traces`,
    stop: () => child.kill(),
  };
}

async function main() {
  const [command, ...args] = process.argv.slice(2);
  if (command === 'authorization-server') {
    const server = await startAuthorizationServer();
    console.log(JSON.stringify({ issuer: server.issuer, device_url: server.deviceUrl, token_url: server.tokenUrl }));
  } else if (command === 'worker') {
    const worker = await startWorker(JSON.parse(args[0]));
    console.log(JSON.stringify({ url: worker.url }));
  } else if (command === 'approve' || command === 'deny') {
    const done = await enterUserCode(args[0], args[1], { abort: command === 'deny' });
    console.log(JSON.stringify({ status: done.status }));
  } else {
    console.error('usage: support.mjs authorization-server | worker BINDINGS | approve|deny ISSUER USER_CODE');
    process.exit(2);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

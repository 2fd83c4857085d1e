// Private OTLP ingest through the Worker under workerd: the OpenTelemetry Python SDK's own
// exporter sends spans full of planted personal data, a receiver that decodes with the
// official protobuf classes (tests/otlp_receiver.py) gets them, and none of it is there.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

import { INGEST_KEY, enterUserCode, startAuthorizationServer, startReceiver, startWorker } from './support.mjs';

const run = promisify(execFile);
const here = path.dirname(new URL(import.meta.url).pathname);

let as;
let receiver;
let worker;
let received;
let ingestToken;

before(async () => {
  received = path.join(mkdtempSync(path.join(tmpdir(), 'pryx-otlp-')), 'received.jsonl');
  as = await startAuthorizationServer();
  receiver = await startReceiver(received);
  worker = await startWorker({
    GITHUB_CLIENT_ID: 'pryx-github',
    GITHUB_DEVICE_URL: as.deviceUrl,
    GITHUB_TOKEN_URL: as.tokenUrl,
    INGEST_TOKEN_KEY: INGEST_KEY,
    OTLP_FORWARD_URL: receiver.url,
    OTLP_FORWARD_AUTH: 'Bearer backend-secret',
  });
  ingestToken = await loginForIngestToken(worker.url);
});

after(async () => {
  await worker?.stop();
  receiver?.stop();
  await as?.stop();
});

const form = (fields) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields),
});

/** A device login with an install id, as Pryx does it: the answer carries the ingest token. */
async function loginForIngestToken(url) {
  const device = await (await fetch(`${url}/auth/github/device`, form({ scope: 'read:user' }))).json();
  await enterUserCode(as.issuer, device.user_code);
  const tokens = await (
    await fetch(`${url}/auth/github/token`, form({ device_code: device.device_code, install_id: 'install-otlp-0001' }))
  ).json();
  assert.ok(tokens.pryx_ingest_token, JSON.stringify(Object.keys(tokens)));
  return tokens.pryx_ingest_token;
}

function records() {
  if (!existsSync(received)) return [];
  return readFileSync(received, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

function attributes(list) {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, Object.values(value ?? {})[0]]));
}

for (const compression of ['none', 'gzip']) {
  test(`the python sdk's spans arrive with every planted datum gone (${compression})`, async () => {
    const before = records().length;
    const { stdout } = await run('python3', [path.join(here, 'send_spans.py'), `${worker.url}/v1/traces`, ingestToken, compression]);
    const { result, needles } = JSON.parse(stdout);
    assert.equal(result, 'SUCCESS');
    const arrived = records().slice(before);
    assert.equal(arrived.length, 1);
    const [record] = arrived;
    assert.equal(record.authorization, 'Bearer backend-secret', 'the backend gets the operator\'s credential');
    assert.equal(record.content_type, 'application/x-protobuf');
    const text = JSON.stringify(record.request);
    for (const needle of needles) assert.ok(!text.includes(needle), `${needle} reached the backend`);

    const resource = record.request.resourceSpans[0].resource;
    const spans = record.request.resourceSpans[0].scopeSpans[0].spans;
    assert.equal(spans.length, 2);
    const [parent, child] = spans;
    assert.equal(parent.name, 'GET /users/[REDACTED:email]');
    const parentAttributes = attributes(parent.attributes);
    assert.equal(parentAttributes['http.request.header.authorization'], 'Bearer [REDACTED:bearer_token]');
    assert.equal(parentAttributes['gen_ai.prompt'], undefined, 'prompts are removed');
    assert.equal(parentAttributes['redaction.redacted.keys'], 'gen_ai.prompt,gen_ai.tool.call.arguments');
    assert.ok(Number(parentAttributes['redaction.masked.count']) >= 7);
    assert.equal(parent.status.message, 'denied for [REDACTED:api_key]');
    const childAttributes = attributes(child.attributes);
    assert.equal(childAttributes['code.filepath'], '/home/[REDACTED:user]/secret-plans.md');
    assert.equal(childAttributes['gen_ai.request.model'], 'gpt-4o-mini');
    assert.equal(childAttributes['pryx.version'], '1.2.3.4', 'a version number is no IP address');
    assert.equal(attributes(child.links[0].attributes).slack, '[REDACTED:api_key]');
    assert.equal(attributes(resource.attributes)['redaction.masked.count'], '2');
    assert.equal(attributes(resource.attributes)['service.name'], 'pryx-test');
  });
}

const otlpJson = (spanId = 'EEE19B7EC3C1B174') => ({
  resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { stringValue: 'curl' } }] },
    scopeSpans: [{
      spans: [
        { traceId: '5B8EFFF798038103D269B633813FC60C', spanId: 'EEE19B7EC3C1B174', name: 'ok from 198.51.100.3', kind: 2 },
        { traceId: '5B8EFFF798038103D269B633813FC60C', spanId, name: 'second' },
      ],
    }],
  }],
});

function postTraces(body, headers = {}) {
  return fetch(`${worker.url}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ingestToken}`, ...headers },
    body,
  });
}

test('otlp json is accepted, and spans with bad ids are reported as partial success', async () => {
  const ok = await postTraces(JSON.stringify(otlpJson('EEE19B7EC3C1B175')));
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), {});
  assert.equal(records().at(-1).request.resourceSpans[0].scopeSpans[0].spans[0].name, 'ok from [REDACTED:ipv4]');

  const partial = await postTraces(JSON.stringify(otlpJson('0000000000000000')));
  assert.equal(partial.status, 200);
  const body = await partial.json();
  assert.equal(body.partialSuccess.rejectedSpans, '1');
  assert.match(body.partialSuccess.errorMessage, /invalid trace or span id/);
});

test('unauthenticated, malformed, oversized and bomb requests get otlp errors', async () => {
  const count = records().length;
  const expectStatus = async (response, status, code) => {
    assert.equal(response.status, status);
    const body = await response.json();
    assert.equal(body.code, code, JSON.stringify(body));
    assert.equal(typeof body.message, 'string');
  };
  const valid = JSON.stringify(otlpJson('EEE19B7EC3C1B176'));
  await expectStatus(await postTraces(valid, { authorization: '' }), 401, 16);
  const forged = ingestToken.replace('install-otlp-0001', 'install-otlp-0002');
  await expectStatus(await postTraces(valid, { authorization: `Bearer ${forged}` }), 401, 16);
  await expectStatus(await postTraces('{"resourceSpans": 7}'), 400, 3);
  await expectStatus(await postTraces(gzipSync(Buffer.alloc(64 * 1024 * 1024)), { 'content-encoding': 'gzip' }), 413, 3);
  await expectStatus(await postTraces(Buffer.alloc(5 * 1024 * 1024, 0x20)), 413, 3);
  await expectStatus(await postTraces(valid, { 'content-encoding': 'br' }), 415, 3);
  const text = await postTraces(valid, { 'content-type': 'text/plain' });
  assert.equal(text.status, 415);
  assert.equal(records().length, count, 'nothing refused reached the backend');
});

test('a backend that is down makes the exporter retry later', async () => {
  const lost = await startWorker({
    INGEST_TOKEN_KEY: INGEST_KEY,
    OTLP_FORWARD_URL: 'http://127.0.0.1:9/v1/traces',
  });
  try {
    const response = await fetch(`${lost.url}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ingestToken}` },
      body: JSON.stringify(otlpJson('EEE19B7EC3C1B177')),
    });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '30');
  } finally {
    await lost.stop();
  }
});

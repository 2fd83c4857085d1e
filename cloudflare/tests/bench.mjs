// The Worker's figures under workerd (run by ./x bench, not by ./x test):
// - CPU per OTLP request of 100 spans: workerd's own CPU time (utime + stime from /proc)
//   over sequential requests, minus the same count of /healthz requests (what routing and
//   HTTP cost any request), so what remains is reading, decoding, scrubbing, re-encoding
//   and forwarding. In bare workerd (as Cloudflare runs a Worker) and under Miniflare
//   (which puts an entry worker in front). Cloudflare bills Worker CPU milliseconds; the
//   target is under 1 ms.
// - Device-flow round trips through the Worker against the local authorization server,
//   beside the same requests sent to it directly.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { INGEST_KEY, enterUserCode, startAuthorizationServer, startBareWorkerd, startWorker } from './support.mjs';

const REQUESTS = 300;
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

/** workerd processes started after `since` (Miniflare spawns one per instance). */
function workerdPids() {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'workerd';
      } catch {
        return false;
      }
    });
}

function cpuSeconds(pids) {
  return pids.reduce((total, pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return total + (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  }, 0);
}

/** A batch of 100 spans shaped like Pryx's, as protobuf (made with the official classes). */
function batch() {
  return execFileSync('python3', ['-c', `
import sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
request = ExportTraceServiceRequest()
rs = request.resource_spans.add()
for key, value in [("service.name", "pryx"), ("service.version", "0.1.0")]:
    kv = rs.resource.attributes.add(); kv.key = key; kv.value.string_value = value
spans = rs.scope_spans.add()
for i in range(100):
    span = spans.spans.add()
    span.trace_id = bytes([i % 250 + 1]) * 16
    span.span_id = bytes([i % 250 + 1]) * 8
    span.name = f"chat gpt-4o-mini #{i}"
    span.start_time_unix_nano = 1764720000000000000 + i
    span.end_time_unix_nano = 1764720000500000000 + i
    attributes = [("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o-mini"),
        ("pryx.session.id", "0193a6f2-7c1e-7d3a-9b5e-2f4c8d1e6a7b"), ("server.address", "api.openai.com"),
        ("url.full", "https://api.openai.com/v1/chat/completions"), ("gen_ai.tool.name", "read_file"),
        ("code.filepath", "/home/alice/projects/pryx/src/agent/turn.rs"),
        ("gen_ai.tool.call.arguments", '{"path":"/home/alice/notes/todo.md"}')]
    if i % 10 == 0:
        attributes += [("user.email", "alice@example.com"), ("client.address", "203.0.113.42")]
    for key, value in attributes:
        kv = span.attributes.add(); kv.key = key; kv.value.string_value = value
    event = span.events.add(); event.name = "gen_ai.choice"
    kv = event.attributes.add(); kv.key = "gen_ai.response.finish_reasons"; kv.value.string_value = "stop"
sys.stdout.buffer.write(request.SerializeToString())
`]);
}

async function timeSequential(count, send) {
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) await send();
  return Number(process.hrtime.bigint() - started) / 1e6 / count;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** CPU per request in the workerd processes `pids`, over sequential requests. */
async function measure(label, url, pids, body, token) {
  const traces = async () => {
    const response = await fetch(`${url}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', authorization: `Bearer ${token}` },
      body,
    });
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`traces answered ${response.status}`);
  };
  const refused = async () => {
    const response = await fetch(`${url}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', authorization: 'Bearer pit1.wrong' },
      body,
    });
    await response.arrayBuffer();
  };
  const health = async () => {
    await (await fetch(`${url}/healthz`)).text();
  };
  for (let i = 0; i < 30; i += 1) await traces(); // warm up (the wasm is compiled lazily)
  const rounds = [];
  for (let round = 0; round < 3; round += 1) {
    let cpu = cpuSeconds(pids);
    await timeSequential(REQUESTS, health);
    const healthCpu = (cpuSeconds(pids) - cpu) / REQUESTS;
    cpu = cpuSeconds(pids);
    await timeSequential(REQUESTS, refused);
    const refusedCpu = (cpuSeconds(pids) - cpu) / REQUESTS;
    cpu = cpuSeconds(pids);
    const wall = await timeSequential(REQUESTS, traces);
    const tracesCpu = (cpuSeconds(pids) - cpu) / REQUESTS;
    rounds.push({ healthCpu, refusedCpu, tracesCpu, wall });
  }
  const ms = (seconds) => (seconds * 1e3).toFixed(3);
  const of = (pick) => ms(median(rounds.map(pick)));
  console.log(`${label}: OTLP request of 100 spans (${body.length} bytes protobuf), ${REQUESTS} sequential requests, median of 3 rounds:`);
  console.log(`  CPU per /v1/traces request            ${of((r) => r.tracesCpu)} ms`);
  console.log(`  CPU per /healthz request              ${of((r) => r.healthCpu)} ms`);
  console.log(`  CPU per refused request (401)         ${of((r) => r.refusedCpu)} ms (the same body, not read)`);
  console.log(`  the handler's own CPU (difference)    ${of((r) => r.tracesCpu - r.healthCpu)} ms (read, decode, scrub, encode, forward)`);
  console.log(`  wall time per request (with forward)  ${median(rounds.map((r) => r.wall)).toFixed(3)} ms`);
}

async function main() {
  const sink = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const as = await startAuthorizationServer();
  const firstPids = new Set(workerdPids());
  const worker = await startWorker({
    GITHUB_CLIENT_ID: 'pryx-github',
    GITHUB_DEVICE_URL: as.deviceUrl,
    GITHUB_TOKEN_URL: as.tokenUrl,
    INGEST_TOKEN_KEY: INGEST_KEY,
    OTLP_FORWARD_URL: `http://127.0.0.1:${sink.address().port}/v1/traces`,
  });
  const pids = workerdPids().filter((pid) => !firstPids.has(pid));

  const form = (fields) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
  });
  const device = await (await fetch(`${worker.url}/auth/github/device`, form({ scope: 'read:user' }))).json();
  await enterUserCode(as.issuer, device.user_code);
  const { pryx_ingest_token: token } = await (
    await fetch(`${worker.url}/auth/github/token`, form({ device_code: device.device_code, install_id: 'install-bench-01' }))
  ).json();

  const body = batch();
  const settings = {
    INGEST_TOKEN_KEY: INGEST_KEY,
    OTLP_FORWARD_URL: `http://127.0.0.1:${sink.address().port}/v1/traces`,
  };
  const before = new Set(workerdPids());
  const bare = await startBareWorkerd(settings);
  const barePids = workerdPids().filter((pid) => !before.has(pid));
  await measure('bare workerd (as Cloudflare runs a Worker)', bare.url, barePids, body, token);
  bare.stop();
  await measure('workerd under Miniflare (an entry worker in front)', worker.url, pids, body, token);

  const deviceThrough = [];
  const deviceDirect = [];
  const pollThrough = [];
  for (let i = 0; i < 50; i += 1) {
    let started = process.hrtime.bigint();
    const code = await (await fetch(`${worker.url}/auth/github/device`, form({ scope: 'read:user' }))).json();
    deviceThrough.push(Number(process.hrtime.bigint() - started) / 1e6);
    started = process.hrtime.bigint();
    await (await fetch(as.deviceUrl, form({ client_id: 'pryx-github', scope: 'read:user' }))).json();
    deviceDirect.push(Number(process.hrtime.bigint() - started) / 1e6);
    started = process.hrtime.bigint();
    await (await fetch(`${worker.url}/auth/github/token`, form({ device_code: code.device_code }))).json();
    pollThrough.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  console.log('device flow against the local authorization server, median of 50:');
  console.log(`  device code through the Worker ${median(deviceThrough).toFixed(2)} ms, direct ${median(deviceDirect).toFixed(2)} ms`);
  console.log(`  token poll through the Worker  ${median(pollThrough).toFixed(2)} ms (authorization_pending)`);

  await worker.stop();
  await as.stop();
  sink.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

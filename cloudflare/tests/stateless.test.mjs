// The Worker stores nothing: no stateful binding is declared, and no code asks for one.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

test('wrangler.toml binds nothing that keeps state', () => {
  const config = readFileSync(path.join(root, 'wrangler.toml'), 'utf8')
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .join('\n');
  for (const binding of ['kv_namespaces', 'd1_databases', 'r2_buckets', 'durable_objects', 'queues',
    'vectorize', 'hyperdrive', 'analytics_engine_datasets', 'workflows', 'send_email', 'migrations']) {
    assert.ok(!config.includes(binding), `wrangler.toml declares ${binding}`);
  }
  assert.match(config, /^logpush = false$/m);
});

test('the code uses no stateful api', () => {
  const sources = ['worker/src', 'control/src'].flatMap((dir) =>
    readdirSync(path.join(root, dir)).map((file) => readFileSync(path.join(root, dir, file), 'utf8')));
  const stateful = [/\.kv\(/, /\.d1\(/, /\.bucket\(/, /durable_object/, /\.queue\(/, /Cache::/, /\.analytics_engine\(/];
  for (const source of sources) {
    for (const pattern of stateful) assert.ok(!pattern.test(source), `${pattern} used`);
  }
  // And the crate does not even compile those bindings in.
  const manifest = readFileSync(path.join(root, 'worker', 'Cargo.toml'), 'utf8');
  assert.ok(!/features\s*=\s*\[[^\]]*"(d1|queue)"/.test(manifest));
});

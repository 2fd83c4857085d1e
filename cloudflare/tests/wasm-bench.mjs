// Runs the native benchmark (control/benches/ingest.rs) compiled to wasm32-wasip1 in Node's
// V8, the engine workerd runs the Worker in: what decoding, scrubbing and re-encoding cost
// as wasm, without workerd's HTTP and subrequest work around them (bench.mjs has those).
// usage: node wasm-bench.mjs INGEST.wasm
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: ['ingest'], env: {} });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
console.log('As wasm in V8 (Node, wasm32-wasip1):');
wasi.start(instance);

// bench/node_parser.js: the eventsource-parser peer of the SSE benchmark.
//
//   node --expose-gc bench/node_parser.js CORPUS [RUNS] [CHUNK_BYTES]
//
// Reads CORPUS into memory (not timed), cuts it into CHUNK_BYTES pieces
// (default 65536; views, no copies) and feeds them, as a fetch() consumer
// must, through a streaming TextDecoder into createParser({ onEvent }).
// One untimed check pass records what parse produced (event count, UTF-8
// byte total of all data, first and last event in full); then RUNS timed passes
// (default 3) count events and data lengths. Prints one JSON object on
// stdout; times are wall-clock seconds from performance.now().
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { createParser } from "eventsource-parser";

const require = createRequire(import.meta.url);
const version = require("eventsource-parser/package.json").version;

const [path, runsArg, chunkArg] = process.argv.slice(2);
if (!path) {
  console.error("usage: node bench/node_parser.js CORPUS [RUNS] [CHUNK_BYTES]");
  process.exit(2);
}
const runs = Number(runsArg ?? 3);
const chunkSize = Number(chunkArg ?? 65536);

const bytes = readFileSync(path);
const chunks = [];
for (let i = 0; i < bytes.length; i += chunkSize) {
  chunks.push(bytes.subarray(i, i + chunkSize));
}

// One pass over all chunks; onEvent is the per-event work.
function parseAll(onEvent) {
  const decoder = new TextDecoder("utf-8");
  const parser = createParser({ onEvent });
  for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
  const rest = decoder.decode();
  if (rest) parser.feed(rest);
}

// Check pass (untimed): what a consumer would see, in UTF-8 bytes.
let events = 0;
let dataBytes = 0;
let first = null;
let last = null;
parseAll((ev) => {
  events++;
  dataBytes += Buffer.byteLength(ev.data, "utf8");
  const e = { data: ev.data, event: ev.event ?? "message", id: ev.id ?? "" };
  if (first === null) first = e;
  last = e;
});

// Timed passes: count events and sum data lengths (UTF-16 units; the work
// per event is one property read, as #data is in Lua).
const times = [];
for (let r = 0; r < runs; r++) {
  globalThis.gc?.();
  let n = 0;
  let len = 0;
  const t0 = performance.now();
  parseAll((ev) => {
    n++;
    len += ev.data.length;
  });
  const t1 = performance.now();
  times.push((t1 - t0) / 1000);
  if (n !== events) {
    console.error(`node_parser: timed run ${r + 1} saw ${n} events, check pass saw ${events}`);
    process.exit(1);
  }
}

process.stdout.write(
  JSON.stringify({
    impl: `eventsource-parser ${version}`,
    node: process.version,
    corpus: path,
    input_bytes: bytes.length,
    chunk_bytes: chunkSize,
    chunks: chunks.length,
    events,
    data_bytes: dataBytes,
    first,
    last,
    times,
    best: Math.min(...times),
  }) + "\n",
);

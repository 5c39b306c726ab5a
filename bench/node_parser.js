// bench/node_parser.js: the eventsource-parser cell of the parser benchmark,
// in a fresh process (the Node twin of bench/parser_one.lua).
//
//   node --expose-gc bench/node_parser.js CORPUS MODE [WARM [CHUNK [LAUNCH_US]]]
//
// MODE memory: CORPUS is read and cut into CHUNK-byte views (default 65536)
// before timing starts; stream: the timed loop reads the file through
// fs.createReadStream({ highWaterMark: CHUNK }) with `for await`, as a
// script reading a file or a socket does. Either way the bytes go, as a
// fetch() consumer must send them, through a streaming TextDecoder into
// createParser({ onEvent }).
//
// The first pass is the figure (fresh process, cold JIT, one pass). In
// memory mode WARM more passes follow (their best is the "warm" figure).
// The work per event: count it, add data.length, keep the event (the first
// and last go into the report for the driver's agreement check). Prints
// "BENCH-REPORT {json}"; times are seconds.
import { readFileSync, createReadStream } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { createParser } from "eventsource-parser";

const require = createRequire(import.meta.url);
const version = require("eventsource-parser/package.json").version;

const [path, mode, warmArg, chunkArg, launchArg] = process.argv.slice(2);
if (!path || (mode !== "memory" && mode !== "stream")) {
  console.error("usage: node bench/node_parser.js CORPUS memory|stream [WARM [CHUNK [LAUNCH_US]]]");
  process.exit(2);
}
const warmRuns = Number(warmArg ?? 0);
const chunkSize = Number(chunkArg ?? 65536);
const nowEpoch = () => performance.timeOrigin + performance.now(); // ms since 1970

let chunks = null;
if (mode === "memory") {
  const bytes = readFileSync(path);
  chunks = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
}

// One pass; onEvent is the per-event work. Returns seconds.
async function pass(onEvent) {
  const decoder = new TextDecoder("utf-8");
  const parser = createParser({ onEvent });
  const t0 = performance.now();
  if (chunks) {
    for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
  } else {
    for await (const chunk of createReadStream(path, { highWaterMark: chunkSize })) {
      parser.feed(decoder.decode(chunk, { stream: true }));
    }
  }
  const rest = decoder.decode();
  if (rest) parser.feed(rest);
  return (performance.now() - t0) / 1000;
}

let n = 0;
let len = 0;
let first = null;
let last = null;
const count = (ev) => {
  n++;
  len += ev.data.length;
  last = ev;
  if (n === 1) first = ev;
};
const cold = await pass(count);
const doneAt = nowEpoch();
const rss = process.resourceUsage().maxRSS / 1024; // MiB
const events = n;

let warm = null;
if (chunks) {
  for (let r = 0; r < warmRuns; r++) {
    globalThis.gc?.();
    n = 0;
    const t = await pass(count);
    if (warm === null || t < warm) warm = t;
  }
}

const report = {
  impl: `eventsource-parser ${version}`,
  interp: `node ${process.version}`,
  cold,
  warm,
  events,
  rss,
  from_launch: launchArg ? (doneAt - Number(launchArg) / 1000) / 1000 : null,
};
const plain = (ev) => ev && { data: ev.data, event: ev.event ?? "message", id: ev.id ?? "" };
Object.assign(report, { first: plain(first), last: plain(last) });
process.stdout.write("BENCH-REPORT " + JSON.stringify(report) + "\n");

// bench/node_client.mjs: Node's fetch() + eventsource-parser as the peer of
// the loopback benchmarks (the twin of bench/client.lua).
//
//   node bench/node_client.mjs e2e URL
//   node bench/node_client.mjs latency URL REQUESTS
//   node bench/node_client.mjs streams URLS_FILE FROM_US
//
// Each response is read as a fetch() consumer reads one: the body's chunks
// through a streaming TextDecoder into createParser({ onEvent }).
// e2e: per event, count it and add data.length. latency: per event, now -
// the server's send time (gettimeofday microseconds at data[5..21) on both
// sides: performance.timeOrigin + performance.now() here); per request, the
// time from the fetch() call to its first event. streams: every URL at once;
// events sent before FROM_US are the warm-up (counted, not measured); from
// the first one sent at FROM_US or later, latency per event and the CPU time
// (process.cpuUsage) to the last. Prints "BENCH-REPORT {json}".
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createParser } from "eventsource-parser";

const [mode, url, arg, arg2] = process.argv.slice(2);
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const sentUs = (data) => Number(data.slice(5, 21));

async function read(u, onEvent) {
  const res = await fetch(u);
  if (!res.ok) throw new Error(`HTTP ${res.status} from ${u}`);
  const decoder = new TextDecoder();
  const parser = createParser({ onEvent });
  for await (const chunk of res.body) parser.feed(decoder.decode(chunk, { stream: true }));
  const rest = decoder.decode();
  if (rest) parser.feed(rest);
}

const report = (r) => process.stdout.write("BENCH-REPORT " + JSON.stringify(r) + "\n");

if (mode === "e2e") {
  let n = 0;
  let len = 0;
  await read(url, (ev) => {
    n++;
    len += ev.data.length;
  });
  report({ events: n, utf16_units: len });
} else if (mode === "latency") {
  const requests = Number(arg ?? 1);
  const lat = [];
  const ttfe = [];
  for (let r = 0; r < requests; r++) {
    const t0 = nowUs();
    let first = true;
    await read(url, (ev) => {
      const now = nowUs();
      if (first) {
        first = false;
        ttfe.push(Math.round(now - t0));
      }
      lat.push(Math.round(now - sentUs(ev.data)));
    });
  }
  report({ lat, ttfe });
} else if (mode === "streams") {
  const urls = readFileSync(url, "utf8").split("\n").filter(Boolean);
  const from = Number(arg ?? 0);
  const lat = [];
  let all = 0;
  let cpu0 = null;
  let wall0 = null;
  let failed = 0;
  const onEvent = (ev) => {
    const now = nowUs();
    const sent = sentUs(ev.data);
    all++;
    if (sent < from) return;
    if (cpu0 === null) {
      cpu0 = process.cpuUsage();
      wall0 = now;
    }
    lat.push(Math.round(now - sent));
  };
  await Promise.all(urls.map((u) => read(u, onEvent).catch(() => failed++)));
  const cpu = cpu0 ? process.cpuUsage(cpu0) : { user: 0, system: 0 };
  report({
    lat,
    events: all,
    cpu: (cpu.user + cpu.system) / 1e6,
    wall: wall0 ? (nowUs() - wall0) / 1e6 : 0,
    failed,
  });
} else {
  console.error("usage: node bench/node_client.mjs e2e|latency|streams URL [REQUESTS]");
  process.exit(2);
}

// Sends StatsD lines with hot-shots (the npm registry's StatsD client) for tests/test_statsd.py:
//   node tests/clients/hot_shots.js PROTOCOL PORT COUNT
// COUNT increments of node.orders.placed (tagged region:eu), COUNT set members of
// node.visitors (COUNT / 2 distinct), COUNT timings of node.latency (i % 100 + 1 ms, as
// timing, histogram and distribution in turn) and a gauge node.queue set to COUNT, then
// moved by -1 once (so it reads COUNT - 1), then closes the client once everything was sent.
const StatsD = require("hot-shots");

const [protocol, port, count] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const client = new StatsD({ host: "127.0.0.1", port, protocol, maxBufferSize: 0,
                            errorHandler: (error) => { console.error(error); process.exit(1); } });
for (let i = 0; i < count; i++) {
  client.increment("node.orders.placed", 1, ["region:eu"]);
  client.set("node.visitors", `visitor${i % (count / 2)}`);
  const kind = ["timing", "histogram", "distribution"][i % 3];
  client[kind]("node.latency", (i % 100) + 1);
}
client.gauge("node.queue", count);
client.gaugeDelta("node.queue", -1);
client.close((error) => {
  if (error) { console.error(error); process.exit(1); }
  console.log(`sent ${3 * count + 2} lines over ${protocol}`);
});

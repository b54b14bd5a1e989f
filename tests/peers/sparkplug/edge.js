// A Sparkplug B edge node built on Eclipse Tahu's JavaScript client (sparkplug-client),
// driven line by line on stdin by tests/collector/test_sparkplug.py. It prints one line
// per thing the test waits for ("connected", "birth <n>", "ncmd rebirth", "sent <what>").
//
//   node edge.js mqtt://127.0.0.1:PORT GROUP NODE DEVICE
//
// Commands: data (one DDATA by alias, one NDATA by alias), gap (skip a seq number, then
// data), ddeath, ndeath (a clean stop: the client publishes its NDEATH), kill (exit
// without NDEATH: the broker publishes the will).
"use strict";
const sparkplug = require("sparkplug-client");
const readline = require("readline");

const [url, group, node, device] = process.argv.slice(2);
const client = sparkplug.newClient({
  serverUrl: url,
  username: "",
  password: "",
  groupId: group,
  edgeNode: node,
  clientId: `edge-${node}-${process.pid}`,
  version: "spBv1.0",
  publishDeath: true,
});

let births = 0;
let step = 0;
const say = (line) => process.stdout.write(line + "\n");

function publishBirths() {
  births += 1;
  client.publishNodeBirth({
    timestamp: Date.now(),
    metrics: [
      { name: "Node Control/Rebirth", type: "Boolean", value: false },
      { name: "Properties/Hardware Make", alias: 1, type: "String", value: "Okuma" },
      { name: "Uptime", alias: 2, type: "Int64", value: 3600 },
    ],
  });
  client.publishDeviceBirth(device, {
    timestamp: Date.now(),
    metrics: [
      { name: "Production/PartCount", alias: 10, type: "Int32", value: 100 + step },
      { name: "Spindle/Load", alias: 11, type: "Float", value: 42.5 },
      { name: "Spindle/Speed", alias: 12, type: "Double", value: 8000.25 },
      { name: "Execution", alias: 13, type: "String", value: "ACTIVE" },
      { name: "Door Open", alias: 14, type: "Boolean", value: false },
      { name: "Temperature Offset", alias: 15, type: "Int16", value: -7 },
      { name: "Cycle Count", alias: 16, type: "UInt32", value: 4000000000 },
      { name: "Last Cycle End", alias: 17, type: "DateTime", value: 1733580000000 },
    ],
  });
  say(`birth ${births}`);
}

function publishData() {
  step += 1;
  client.publishDeviceData(device, {
    timestamp: Date.now(),
    metrics: [
      { alias: 10, type: "Int32", value: 100 + step },
      { alias: 11, type: "Float", value: 3.14 },
      { alias: 15, type: "Int16", value: -32768 },
    ],
  });
  client.publishNodeData({
    timestamp: Date.now(),
    metrics: [{ alias: 2, type: "Int64", value: 3600 + step }],
  });
}

client.on("birth", () => {
  say("connected");
  publishBirths();
});

client.on("ncmd", (payload) => {
  const rebirth = (payload.metrics || []).find((m) => m.name === "Node Control/Rebirth");
  if (rebirth && rebirth.value) {
    say("ncmd rebirth");
    publishBirths();
  }
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "data") {
    publishData();
  } else if (cmd === "gap") {
    client.seq += 1; // the sequence number of a message that never went out
    publishData();
  } else if (cmd === "ddeath") {
    client.publishDeviceDeath(device, { timestamp: Date.now() });
  } else if (cmd === "ndeath") {
    client.stop();
    setTimeout(() => process.exit(0), 200);
  } else if (cmd === "kill") {
    process.exit(0);
  }
  say(`sent ${cmd}`);
});

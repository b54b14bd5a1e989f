// An OPC UA server on node-opcua (an OPC UA stack we did not write) with one machine
// object "cnc101", an event notifier of the Server object, that has one alarm condition
// (AlarmConditionType) "Overheat". Driven line by line on stdin by
// tests/collector/test_opcua_conditions.py; it prints "ready" and "done <command>".
//
//   node alarms.js PORT
//
// Commands: activate, deactivate (the alarm's state changes; each sends a condition event).
"use strict";
const path = require("path");
const os = require("os");
const readline = require("readline");
const opcua = require("node-opcua");

async function main() {
  const port = Number(process.argv[2]);
  const server = new opcua.OPCUAServer({
    port,
    resourcePath: "/repsys/alarms",
    allowAnonymous: true,
    securityModes: [opcua.MessageSecurityMode.None],
    securityPolicies: [opcua.SecurityPolicy.None],
    serverCertificateManager: new opcua.OPCUACertificateManager({
      rootFolder: path.join(os.tmpdir(), `repsys-node-opcua-${process.pid}`),
      automaticallyAcceptUnknownCertificate: true,
    }),
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  addressSpace.installAlarmsAndConditionsService(); // ConditionRefresh, Acknowledge, ...
  const ns = addressSpace.getOwnNamespace();
  const serverObject = addressSpace.rootFolder.objects.server;
  const machine = ns.addObject({
    browseName: "cnc101",
    organizedBy: addressSpace.rootFolder.objects,
    eventSourceOf: serverObject,
    eventNotifier: 1,
  });
  const input = ns.addVariable({
    browseName: "OverheatInput",
    componentOf: machine,
    dataType: "Boolean",
    value: { dataType: opcua.DataType.Boolean, value: false },
  });
  const alarm = ns.instantiateAlarmCondition("AlarmConditionType", {
    browseName: "Overheat",
    componentOf: machine,
    conditionSource: machine,
    conditionName: "Overheat",
    inputNode: input,
  });
  alarm.setEnabledState(true);
  await server.start();
  process.stdout.write("ready\n");

  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    const cmd = line.trim();
    // activateAlarm/deactivateAlarm change the state; raiseNewCondition sends the event.
    if (cmd === "activate") {
      alarm.activateAlarm();
      alarm.raiseNewCondition({ message: "Spindle overheat", severity: 800, retain: true });
    } else if (cmd === "deactivate") {
      alarm.deactivateAlarm();
      alarm.raiseNewCondition({ message: "Spindle temperature normal", severity: 800, retain: false });
    }
    process.stdout.write(`done ${cmd}\n`);
  });
}

main().catch((err) => {
  process.stdout.write(`error ${err && err.stack}\n`);
  process.exit(1);
});

"""The simulated plant's OPC UA server (asyncua), fed by :class:`sim.plant.model.Plant`.

Every machine appears twice, as the plants' servers show them:

* Kepware-style string nodes in ``kepware_namespace``:
  ``ns=<k>;s=<id>.<id>.<Tag>`` under ``Objects/<id>/<id>/`` (tags ``PartCounter``,
  ``Cycle_Counter_Shift_SL``, ``RunState``, ``Program``, ``SpindleLoad``,
  ``FeedOverride``, ``PalletId``, ``CycleTime``, ``ToolNumber``, ``T<n>_Counter``).
* An OPC 40501-shaped MachineTool tree in ``machines_namespace``:
  ``Objects/Machines/<id>/Monitoring/Channel1/ChannelState`` (0 Active, 1 Interrupted,
  2 Reset), ``.../Channel1/FeedOverride``, ``Monitoring/Spindle/Load``,
  ``Production/ActiveProgram/Name``, ``Production/PartsCompleted``, ``Production/Pallet``,
  ``Equipment/Tools/T<n>/ToolLife/{Indication,WarningValue,LimitValue}``,
  ``MachineryItemState`` (Executing / NotExecuting).

Alarms are events of type ``RepsysAlarmEventType`` (property ``AlarmCode``) fired on the
Server object with ``SourceName`` = machine id. Transport faults: ``server_restart``
stops and restarts the server with one more filler namespace registered first, so every
namespace index moves; ``silent_subscription`` disables the monitored items of every
live subscription (keep-alives go on, data stops), as a server that lost its items does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.object_ids import ObjectIds

from core.config.sim_plant import SimOpcua
from core.logs import get_logger
from core.model import Signal
from sim.plant.model import MachineSpec

log = get_logger(__name__)

_RUN_TO_CHANNEL = {"executing": 0, "interrupted": 1, "stopped": 2}
_RUN_TO_ITEM = {"executing": "Executing", "interrupted": "NotExecuting", "stopped": "NotExecuting"}
_POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


def _sid(text: str, ns: int) -> ua.NodeId:
    """A string node id (``ns=<ns>;s=<text>``)."""
    return ua.NodeId(ua.String(text), ua.Int16(ns))


class _Users(UserManager):
    """Username/password check against the configured users (anonymous when none)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not self.users:
            return User(role=UserRole.User)
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


@dataclass
class _Target:
    node: ua.NodeId
    vtype: ua.VariantType
    convert: Any = None


class PlantServer:
    """Start/stop/restart the server and write the model's signals into it."""

    def __init__(self, cfg: SimOpcua, machines: list[MachineSpec]) -> None:
        self.cfg = cfg
        self.machines = machines
        self.server: Server | None = None
        self.restarts = 0
        self._targets: dict[tuple[str, str, str], list[_Target]] = {}
        self._alarm_type: Any = None
        self._events: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.cfg.host}:{self.cfg.port}/repsys/sim"

    async def start(self) -> None:
        server = Server(
            user_manager=_Users({k: v.get_secret_value() for k, v in self.cfg.users.items()})
        )
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("RepSys simulated plant")
        server.set_security_policy([_POLICIES[p] for p in self.cfg.security])
        if self.cfg.certificate:
            await server.load_certificate(self.cfg.certificate)
            await server.load_private_key(self.cfg.private_key)
        # Filler namespaces first: each restart moves every index of ours by one.
        for n in range(self.restarts):
            await server.register_namespace(f"urn:repsys:sim:filler:{n}")
        kep = await server.register_namespace(self.cfg.kepware_namespace)
        mt = await server.register_namespace(self.cfg.machines_namespace)
        self._targets = {}
        await self._build(server, kep, mt)
        await server.start()
        self.server = server
        log.info("sim_opcua_started", endpoint=self.endpoint, restarts=self.restarts)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def restart(self) -> None:
        """Stop, then start again with every namespace index moved (a fault)."""
        await self.stop()
        self.restarts += 1
        await self.start()

    async def silence_subscriptions(self) -> int:
        """Disable every monitored item of every live subscription (a fault)."""
        assert self.server is not None
        service = self.server.iserver.subscription_service
        n = 0
        for sub in list(service.subscriptions.values()):
            items = sub.monitored_item_srv
            ids = list(items._monitored_items)  # asyncua keeps them private
            await items.set_monitoring_mode(ua.MonitoringMode.Disabled, ids)
            n += len(ids)
        log.info("sim_opcua_silenced", items=n)
        return n

    async def write_status(self, machine: str, signal: str, status: int, subject: str = "") -> None:
        """Give a signal's nodes a status code (a sensor failure, for tests and operators)."""
        assert self.server is not None
        for t in self._targets.get((machine, signal, subject), []):
            dv = ua.DataValue(StatusCode=ua.StatusCode(ua.UInt32(status)))
            await self.server.write_attribute_value(t.node, dv)

    # --- address space --------------------------------------------------------------

    def _add(
        self, key: tuple[str, str, str], node: Any, vtype: ua.VariantType, convert: Any = None
    ) -> None:
        self._targets.setdefault(key, []).append(_Target(node.nodeid, vtype, convert))

    async def _var(  # noqa: PLR0917 - a local builder called once per variable
        self, parent: Any, nodeid: Any, ns: int, name: str, value: Any, vtype: ua.VariantType
    ) -> Any:
        return await parent.add_variable(
            nodeid, ua.QualifiedName(name, ns), ua.Variant(value, vtype)
        )

    async def _build(self, server: Server, kep: int, mt: int) -> None:
        objects = server.get_objects_node()
        self._alarm_type = await server.create_custom_event_type(
            mt,
            "RepsysAlarmEventType",
            ObjectIds.BaseEventType,
            [("AlarmCode", ua.VariantType.Int32)],
        )
        machines_folder = await objects.add_folder(
            _sid("Machines", mt), ua.QualifiedName("Machines", mt)
        )
        d, s, i64 = ua.VariantType.Double, ua.VariantType.String, ua.VariantType.Int64
        for spec in self.machines:
            mid = spec.id
            # Kepware: Objects/<id>/<id>/<tag> with string ids <id>.<id>.<tag>
            channel = await objects.add_folder(_sid(mid, kep), ua.QualifiedName(mid, kep))
            device = await channel.add_folder(_sid(f"{mid}.{mid}", kep), ua.QualifiedName(mid, kep))

            async def tag(
                name: str, value: Any, vtype: ua.VariantType, device: Any = device, mid: str = mid
            ) -> Any:
                return await self._var(
                    device, _sid(f"{mid}.{mid}.{name}", kep), kep, name, value, vtype
                )

            self._add((mid, "part_count", ""), await tag("PartCounter", 0, i64), i64)
            self._add((mid, "part_count", ""), await tag("Cycle_Counter_Shift_SL", 0, i64), i64)
            self._add((mid, "run_state", ""), await tag("RunState", "executing", s), s)
            self._add((mid, "program", ""), await tag("Program", spec.program, s), s)
            self._add((mid, "spindle_load", ""), await tag("SpindleLoad", 0.0, d), d)
            self._add((mid, "feed_override", ""), await tag("FeedOverride", 100.0, d), d)
            self._add((mid, "pallet_id", ""), await tag("PalletId", 1, i64), i64)
            self._add((mid, "cycle_time", ""), await tag("CycleTime", 0.0, d), d)
            self._add((mid, "tool_number", ""), await tag("ToolNumber", 0, i64), i64)
            for tool in spec.tools:
                self._add(
                    (mid, "tool_life", tool.name),
                    await tag(f"{tool.name}_Counter", tool.start, i64),
                    i64,
                )

            # OPC 40501 shape: Objects/Machines/<id>/...
            m = await machines_folder.add_object(_sid(f"{mid}", mt), ua.QualifiedName(mid, mt))
            state = await self._var(
                m,
                _sid(f"{mid}/MachineryItemState", mt),
                mt,
                "MachineryItemState",
                "Executing",
                s,
            )
            self._add((mid, "run_state", ""), state, s, _RUN_TO_ITEM.get)
            monitoring = await m.add_object(
                _sid(f"{mid}/Monitoring", mt), ua.QualifiedName("Monitoring", mt)
            )
            ch = await monitoring.add_object(
                _sid(f"{mid}/Monitoring/Channel1", mt), ua.QualifiedName("Channel1", mt)
            )
            node = await self._var(
                ch,
                _sid(f"{mid}/Channel1/ChannelState", mt),
                mt,
                "ChannelState",
                0,
                ua.VariantType.Int32,
            )
            self._add((mid, "run_state", ""), node, ua.VariantType.Int32, _RUN_TO_CHANNEL.get)
            node = await self._var(
                ch, _sid(f"{mid}/Channel1/FeedOverride", mt), mt, "FeedOverride", 100.0, d
            )
            self._add((mid, "feed_override", ""), node, d)
            spindle = await monitoring.add_object(
                _sid(f"{mid}/Monitoring/Spindle", mt), ua.QualifiedName("Spindle", mt)
            )
            node = await self._var(spindle, _sid(f"{mid}/Spindle/Load", mt), mt, "Load", 0.0, d)
            self._add((mid, "spindle_load", ""), node, d)
            production = await m.add_object(
                _sid(f"{mid}/Production", mt), ua.QualifiedName("Production", mt)
            )
            program = await production.add_object(
                _sid(f"{mid}/Production/ActiveProgram", mt),
                ua.QualifiedName("ActiveProgram", mt),
            )
            node = await self._var(
                program, _sid(f"{mid}/ActiveProgram/Name", mt), mt, "Name", spec.program, s
            )
            self._add((mid, "program", ""), node, s)
            node = await self._var(
                production,
                _sid(f"{mid}/Production/PartsCompleted", mt),
                mt,
                "PartsCompleted",
                0,
                i64,
            )
            self._add((mid, "part_count", ""), node, i64)
            node = await self._var(
                production, _sid(f"{mid}/Production/Pallet", mt), mt, "Pallet", 1, i64
            )
            self._add((mid, "pallet_id", ""), node, i64)
            equipment = await m.add_object(
                _sid(f"{mid}/Equipment", mt), ua.QualifiedName("Equipment", mt)
            )
            tools = await equipment.add_object(
                _sid(f"{mid}/Equipment/Tools", mt), ua.QualifiedName("Tools", mt)
            )
            for tool in spec.tools:
                t = await tools.add_object(
                    _sid(f"{mid}/Tools/{tool.name}", mt), ua.QualifiedName(tool.name, mt)
                )
                life = await t.add_object(
                    _sid(f"{mid}/Tools/{tool.name}/ToolLife", mt),
                    ua.QualifiedName("ToolLife", mt),
                )
                base = f"{mid}/Tools/{tool.name}/ToolLife"
                node = await self._var(
                    life, _sid(f"{base}/Indication", mt), mt, "Indication", tool.start, i64
                )
                self._add((mid, "tool_life", tool.name), node, i64)
                await self._var(
                    life,
                    _sid(f"{base}/WarningValue", mt),
                    mt,
                    "WarningValue",
                    tool.warning_at,
                    i64,
                )
                await self._var(
                    life, _sid(f"{base}/LimitValue", mt), mt, "LimitValue", tool.life, i64
                )
                await self._var(
                    life,
                    _sid(f"{base}/IsCountingUp", mt),
                    mt,
                    "IsCountingUp",
                    True,
                    ua.VariantType.Boolean,
                )
        self._events = {}
        for spec in self.machines:
            self._events[spec.id] = await server.get_event_generator(
                self._alarm_type, ObjectIds.Server
            )

    # --- feeding -------------------------------------------------------------------

    async def apply(self, signals: list[Signal]) -> None:
        """Write each signal into its nodes, with the simulated source timestamp."""
        server = self.server
        if server is None:
            return
        now = datetime.now(UTC)
        for sig in signals:
            if sig.name == "alarm":
                await self._alarm(sig)
                continue
            targets = self._targets.get((sig.machine, sig.name, sig.subject))
            if not targets:
                continue
            ts = datetime.fromtimestamp(sig.source_ts, UTC)
            for t in targets:
                value = t.convert(sig.value) if t.convert is not None else sig.value
                if value is None:
                    continue
                if t.vtype == ua.VariantType.Double:
                    value = float(value)
                dv = ua.DataValue(
                    ua.Variant(value, t.vtype),
                    SourceTimestamp=ts,  # type: ignore[arg-type]  # asyncua's DateTime is a datetime
                    ServerTimestamp=now,  # type: ignore[arg-type]  # as above
                )
                await server.write_attribute_value(t.node, dv)

    async def _alarm(self, sig: Signal) -> None:
        gen = self._events.get(sig.machine)
        if gen is None or sig.attrs.get("active") != "true":
            return
        # Alarm values are codes (ints); Value also admits text, which never gets here.
        gen.event.AlarmCode = ua.Int32(int(sig.value))  # type: ignore[arg-type]
        gen.event.Message = ua.LocalizedText(sig.attrs.get("text", ""))
        gen.event.Severity = 900 if sig.attrs.get("severity") == "high" else 500
        gen.event.SourceName = sig.machine
        await gen.trigger(time_attr=datetime.fromtimestamp(sig.source_ts, UTC))

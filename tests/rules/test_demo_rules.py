"""The demo's rules on the demo's simulated plant: a ticket from cnc103 within a minute.

``config/demo.yaml`` configures both the simulated plant (cnc103 changes tool T1 long
before its life) and the rules; this runs the plant's first 70 s through the engine with
exactly that configuration.
"""

from __future__ import annotations

import re

import yaml

from core.config import parse_config
from rules.engine import Program
from rules.replay import replay
from sim.plant.model import Plant
from sim.plant.service import machine_specs, scenario_of
from tests.conftest import REPO


def test_the_demo_plant_gives_a_tooling_ticket_on_cnc103_within_a_minute() -> None:
    text = (REPO / "config" / "demo.yaml").read_text()
    # The placeholders repsys demo fills in: a Redis URL, the work folder, ports.
    fill = {"REDIS_URL": "redis://127.0.0.1:1/0", "WORKDIR": "/tmp/repsys-demo"}
    text = re.sub(r"@([A-Z_]+)@", lambda m: fill.get(m.group(1), "1"), text)
    cfg = parse_config(yaml.safe_load(text), file="demo.yaml")
    plant = Plant(machine_specs(cfg), scenario_of(cfg), seed=cfg.sim.plant.seed)
    result = replay(Program(cfg), plant.advance(70.0))
    rows = result.ledger.rows()
    assert [(r["machine"], r["rule"], r["subject"]) for r in rows] == [
        ("cnc103", "tool_life_short", "T1")
    ]
    [ticket] = result.ledger.tickets.values()
    assert ticket["title"] == "Tooling Issue: Tool 1 on CNC 103 is not reaching tool life"
    assert rows[0]["summary"].startswith("Tool 1 on CNC 103 is not reaching tool life: changed at")

"""The rules section: bad input named by key path, the sample and README agree, every type
has its golden case and README section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import ConfigError, load_config, parse_config
from rules.engine import Program
from rules.replay import case_config, case_dirs
from rules.types import REGISTRY
from tests.conftest import REPO

RULES_DIR = REPO / "rules"
CASES = REPO / "tests" / "rules" / "cases"
MACHINES = "machines:\n  - {id: cnc103, pcn: 1, workcenter_key: 1, workcenter_code: c}\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("rules:\n  rules:\n    - {name: x, type: counter_jump, factr: 1}\n",
         "rules.rules[0].factr: unknown key"),
        ("rules:\n  rules:\n    - {name: x, type: threshold, signal: s}\n",
         "rules.rules[0]: give exactly one of 'above' and 'below'"),
        ("rules:\n  rules:\n    - {name: x, type: threshold, signal: s, above: 5, clear_at: 6}\n",
         "rules.rules[0]: clear_at must not be above 'above'"),
        ("rules:\n  rules:\n    - {name: x, type: no_data}\n    - {name: x, type: downtime}\n",
         "rules.rules: rule name 'x' appears twice"),
        ("rules:\n  rules:\n    - {name: Bad-Name, type: downtime}\n",
         "rules.rules[0].name: String should match pattern '^[a-z][a-z0-9_]{0,63}$'"),
        ("rules:\n  shifts: ['6:00']\n", "rules.shifts: shift start '6:00' is not HH:MM"),
        ("rules:\n  worker: {lease_ttl_s: 2, renew_interval_s: 1}\n",
         "rules.worker: renew_interval_s must be at most a third of lease_ttl_s"),
        ("rules:\n  defaults: {cycle_source: spindle}\n",
         "rules.defaults.cycle_source: Input should be 'part_count', 'cycle_time', "
         "'cycle_edges', 'run_state' or 'machining_event'"),
    ],
)  # fmt: skip
def test_bad_rules_config_names_key_path_and_reason(
    tmp_path: Path, body: str, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MACHINES + body)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value) == f"{bad}: {message}"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": [{"name": "x", "type": "downtime", "machines": ["cnc103", "cnc999"]}]},
         "f.yaml: rules.rules[0].machines[1]: unknown machine 'cnc999'"),
        ({"machines": {"cnc999": {"cycle_source": "cycle_time"}}},
         "f.yaml: rules.machines.cnc999: not a configured machine"),
    ],
)  # fmt: skip
def test_rules_may_only_name_configured_machines(rules: dict[str, Any], message: str) -> None:
    cfg = parse_config({**yaml.safe_load(MACHINES), "rules": rules})
    with pytest.raises(ConfigError) as err:
        Program(cfg, file="f.yaml")
    assert str(err.value) == message


def test_machine_settings_override_defaults_key_by_key() -> None:
    cfg = parse_config({
        **yaml.safe_load(MACHINES),
        "rules": {"defaults": {"cycle_source": "cycle_time", "tools": {"T1": {"life": 198}}},
                  "machines": {"cnc103": {"tools": {"T2": {"life": 348}}}}},
    })  # fmt: skip
    spec = cfg.rules.machine_spec("cnc103")
    assert spec.cycle_source == "cycle_time"  # not set on the machine: the default's
    assert {k: t.life for k, t in spec.tools.items()} == {"T1": 198, "T2": 348}
    assert cfg.rules.machine_spec("other").tools["T1"].life == 198


def test_sample_is_the_example_section_and_the_readme_shows_it() -> None:
    sample_text = (RULES_DIR / "sample.yaml").read_text()
    sample = yaml.safe_load(sample_text)
    example = yaml.safe_load((REPO / "config" / "example.yaml").read_text())
    assert example["rules"] == sample["rules"]
    assert sample_text.strip() in (RULES_DIR / "README.md").read_text()
    cfg = load_config(REPO / "config" / "example.yaml")
    program = Program(cfg)
    assert sorted({r.type for r in cfg.rules.rules}) == sorted(REGISTRY)
    assert len(program.rules) == len(REGISTRY)


def test_every_rule_type_has_a_golden_case_and_a_readme_section() -> None:
    readme = (RULES_DIR / "README.md").read_text()
    covered = {r.type for case in case_dirs(CASES) for r in case_config(case).rules.rules}
    for name in REGISTRY:
        assert f"### {name}\n" in readme, name
        assert name in covered, name
        module = RULES_DIR / "types" / f"{name}.py"
        assert module.exists(), module  # name once: folder = registry key = type

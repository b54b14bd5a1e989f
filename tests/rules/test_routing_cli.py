"""``repsys check-config`` on notify routes and ``repsys rules routes --test``, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.notify import NotifyConfig
from repsys.cli import main
from rules.routing.tree import build_tree, receivers

CONFIG = """
machines:
  - {id: cnc103, pcn: 123681, workcenter_key: 61324, workcenter_code: cnc103, cell: Brackets}
  - {id: cnc101, pcn: 123681, workcenter_key: 61101, workcenter_code: cnc101, cell: Knuckles}
notify:
  receivers:
    - {name: maintenance}
    - {name: supervisors, email: {to: [sup@plant.example]}}
    - {name: brackets-lead}
    - {name: plex-notes, plex: {note: true}}
  route:
    receiver: maintenance
    routes:
      - matchers: [event=escalated, "level=~[2-9]"]
        receiver: supervisors
        continue: true
      - matchers: [cell=Brackets]
        receiver: brackets-lead
        routes:
          - matchers: ["rule_type=~tool_.*"]
            receiver: plex-notes
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "repsys.yaml"
    path.write_text(text)
    return path


def test_routes_test_prints_the_receivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(tmp_path, CONFIG)
    argv = ["-c", str(cfg), "rules", "routes", "--test"]
    assert main([*argv, "machine=cnc103", "rule=tool_life_short", "level=2"]) == 0
    assert capsys.readouterr().out.split() == ["supervisors", "brackets-lead"]
    assert main([*argv, "machine=cnc103", "rule_type=tool_life_short", "event=filed"]) == 0
    assert capsys.readouterr().out.split() == ["plex-notes"]
    assert main([*argv, "machine=cnc101", "level=1"]) == 0
    assert capsys.readouterr().out.split() == ["maintenance"]
    assert main([*argv, "machin=cnc101"]) == 2
    assert "machin=cnc101" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            ("receiver: brackets-lead", "receiver: brackets"),
            "notify.route.routes[1].receiver: unknown receiver 'brackets'",
        ),
        (
            ("[cell=Brackets]", "[cel=Brackets]"),
            "notify.route.routes[1].matchers: matcher 'cel=Brackets': unknown label 'cel'",
        ),
        (
            ('"rule_type=~tool_.*"', '"rule_type=~tool_(("'),
            "notify.route.routes[1].routes[0].matchers: matcher",
        ),
        (
            ("continue: true", "continue: true\n        group_wait: 3"),
            "notify.route.routes[0].group_wait: unknown key",
        ),
        (
            ("{name: maintenance}", "{name: maintenance}\n    - {name: maintenance}"),
            "notify.receivers: receiver 'maintenance' appears twice",
        ),
    ],
)
def test_check_config_names_the_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], path: str
) -> None:
    assert change[0] in CONFIG
    cfg = _write(tmp_path, CONFIG.replace(*change))
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: {path}" in err


def test_check_config_prints_continue_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(_write(tmp_path, CONFIG))]) == 0
    out = capsys.readouterr().out
    assert "continue: true" in out and "continue_" not in out


def test_matching_rules_of_alertmanager() -> None:
    cfg = NotifyConfig.model_validate(
        {
            "receivers": [{"name": n} for n in ("root", "a", "b", "c")],
            "route": {
                "receiver": "root",
                "routes": [
                    # Regular expressions are anchored; a missing label is "".
                    {"matchers": ["severity=~high|medium"], "receiver": "a"},
                    {"matchers": ["shift!=third", "cell="], "receiver": "b"},
                    {"matchers": ["machine!~cnc1.*"], "receiver": "c"},
                ],
            },
        }
    )
    tree = build_tree(cfg)
    assert receivers(tree, {"severity": "high"}) == ["a"]
    assert receivers(tree, {"severity": "highest", "shift": "first"}) == ["b"]  # anchored
    assert receivers(tree, {"shift": "third", "machine": "lathe7", "cell": "x"}) == ["c"]
    assert receivers(tree, {"shift": "third", "machine": "cnc103", "cell": "x"}) == ["root"]

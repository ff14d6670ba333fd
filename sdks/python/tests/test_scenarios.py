"""The shared scenario suite (spec/scenarios), run with the Python SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenarios import ScenarioRunner, matches, scenario_files


def test_the_suite_is_there() -> None:
    assert len(scenario_files()) >= 10


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
async def test_scenario(path: Path, tmp_path: Path) -> None:
    scenario = json.loads(path.read_text())
    assert scenario["name"] == path.stem
    await ScenarioRunner(scenario, tmp_path).run()


def test_matching_rule() -> None:
    assert matches({"a": 1}, {"a": 1, "b": 2})
    assert not matches({"a": 1}, {"a": 2})
    assert matches({"a": None}, {})
    assert matches({"a": None}, {"a": None})
    assert not matches({"a": None}, {"a": 0})
    assert matches([{"x": 1}], [{"x": 1, "y": 2}])
    assert not matches([{"x": 1}], [{"x": 1}, {"x": 2}])
    assert not matches(1, True)
    assert not matches(False, 0)
    assert matches("s", "s")

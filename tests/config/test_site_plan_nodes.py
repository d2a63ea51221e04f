"""The cascade part of the site plan: nodes, their checks and the area → node mapping."""
from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import DEMO_DIR, Settings
from config.site_plan import load_site_plan

NODES = '''
[[nodes]]
name = "city"
area = "445300"
sip = "10.1.0.1:5060"
control = "10.1.0.1:5070"

[[nodes]]
name = "luoding"
parent = "city"
area = "445381"
sip = "10.1.1.2:5060"
backup = "sip:9{conference}@10.9.0.2:5060"

[[nodes]]
name = "telecom"
kind = "bridge"
sip = "10.9.0.2:5060"
'''


def plan_with(tmp_path: Path, extra: str, replace: tuple[str, str] = ("", "")) -> Path:
    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8")
    if replace[0]:
        text = text.replace(replace[0], replace[1], 1)
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    path = tmp_path / "plan.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def test_nodes_load_and_map_areas_to_nodes(tmp_path: Path) -> None:
    conf = 'nodes = ["city", "luoding"]\n'
    plan = load_site_plan(plan_with(tmp_path, NODES, ('standing = true\n', 'standing = true\n' + conf)))
    city, luoding = plan.node("city"), plan.node("luoding")
    assert city is not None and luoding is not None and plan.node("nowhere") is None
    assert plan.conferences[0].nodes == ["city", "luoding"]
    township = next(t for t in plan.townships if t.county == "445381")
    assert plan.node_of_area(township.id) is luoding           # a township of Luoding: its county's node
    assert plan.node_of_area("445381") is luoding
    assert plan.node_of_area("445321") is city                 # Xinxing has no node: the root hosts it
    assert luoding.conference_uri("80000001") == "sip:80000001@10.1.1.2:5060"
    assert luoding.backup_uri("80000001") == "sip:980000001@10.9.0.2:5060"
    assert city.backup_uri("80000001") == ""


@pytest.mark.parametrize("extra, message", [
    (NODES.replace('parent = "city"', 'parent = "ghost"'), "parent 'ghost' is not an MCU node"),
    (NODES.replace('parent = "city"', 'parent = "telecom"'), "parent 'telecom' is not an MCU node"),
    (NODES.replace('name = "luoding"', 'name = "city"'), "node name appears twice"),
    (NODES.replace('area = "445381"', 'area = "999999"'), "unknown area '999999'"),
    (NODES.replace('sip = "10.1.1.2:5060"', 'sip = "10.1.1.2"'), "sip must be host:port"),
    (NODES.replace('sip:9{conference}', 'sip:9conf'), "containing '{conference}'"),
    (NODES.replace('name = "city"\narea', 'name = "city"\nparent = "luoding"\narea'), "exactly one MCU node"),
    (NODES.replace('kind = "bridge"', 'kind = "bridge"\nparent = "city"'), "a bridge has no parent"),
    (NODES.replace('name = "luoding"', 'name = "Luo Ding"'), "nodes.1.name"),
    (NODES.replace('control = "10.1.0.1:5070"', 'control = "10.1.0.1"'), "control must be host:port"),
    (NODES.replace('control = "10.1.0.1:5070"', ''), "its parent 'city' needs a control address"),
])
def test_bad_nodes_are_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_site_plan(plan_with(tmp_path, extra))


def test_conference_on_unknown_node_is_refused(tmp_path: Path) -> None:
    path = plan_with(tmp_path, NODES, ('standing = true\n', 'standing = true\nnodes = ["city", "telecom"]\n'))
    with pytest.raises(ConfigError, match="'telecom' is not an MCU node"):
        load_site_plan(path)


def test_cascade_settings_validate() -> None:
    assert Settings().cascade.token is None
    with pytest.raises(ValueError, match="max_hold_seconds"):
        Settings(cascade={"hold_seconds": 60, "max_hold_seconds": 10})
    s = Settings(cascade={"token": "s3cret-token"})
    assert s.cascade.token is not None and "s3cret" not in repr(s.cascade)  # never printed

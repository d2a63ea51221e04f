from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.model import Capability
from dispatch.response_plans import PlanError, ResponsePlans

PLANS = """\
# demo run cards
[[plan]]
name = "住宅火灾 一级"
category = "fire"
subtype = "residential"
priority = [1]
[[plan.require]]
capability = "engine"
count = 2
[[plan.require]]
capability = "ladder"
count = 1
[[plan.require]]
capability = "bls"
count = 1

[[plan]]
name = "火灾 通用"
category = "fire"
subtype = "*"
[[plan.require]]
capability = "engine"

[[plan]]
name = "罗定 住宅火灾 一级（山区加派供水）"
category = "fire"
subtype = "residential"
priority = 1
area = [445381]
[[plan.require]]
capability = "engine"
count = 2
[[plan.require]]
capability = "water_tender"
count = 1
"""


def test_most_specific_card_wins(tmp_path: Path) -> None:
    f = tmp_path / "plans.toml"
    f.write_text(PLANS, encoding="utf-8")
    rp = ResponsePlans.load(f)
    p = rp.select("fire", "residential", 1, [445302])
    assert p is not None and p.name == "住宅火灾 一级" and p.line == 2
    assert [(r.capability, r.count) for r in p.requirements] == [
        (Capability.ENGINE, 2), (Capability.LADDER, 1), (Capability.BLS, 1)]
    assert rp.select("fire", "residential", 1, [445381, 445381100]).name.startswith("罗定")  # type: ignore[union-attr]
    assert rp.select("fire", "vehicle", 3).name == "火灾 通用"  # type: ignore[union-attr]
    assert rp.select("fire", "residential", 2).name == "火灾 通用"  # type: ignore[union-attr]
    assert rp.select("medical", "cardiac", 1) is None


def _err(text: str) -> PlanError:
    with pytest.raises(PlanError) as ei:
        ResponsePlans.loads(text, "plans.toml")
    return ei.value


@pytest.mark.parametrize(
    ("edit", "line", "field", "msg"),
    [
        (('category = "fire"\nsubtype = "residential"', 'category = "arson"\nsubtype = "residential"'), 4, "category", "未知类别"),
        (('subtype = "residential"\npriority = [1]', 'subtype = "typhoon"\npriority = [1]'), 5, "subtype", "没有子类"),
        (("priority = [1]\n", "priority = [1, 7]\n"), 6, "priority", "1–5"),
        (('capability = "ladder"', 'capability = "helicopter"'), 11, "require.capability", "未知能力"),
        (("count = 2\n[[plan.require]]\ncapability = \"ladder\"", "count = 0\n[[plan.require]]\ncapability = \"ladder\""), 9, "require.count", "1–50"),
        (("area = [445381]", 'area = ["luoding"]'), 29, "area", "整数"),
        (('name = "火灾 通用"', 'name = "火灾 通用"\ncolour = "red"'), 19, "colour", "未知字段"),
    ],
)
def test_errors_name_file_line_field(edit: tuple[str, str], line: int, field: str, msg: str) -> None:
    old, new = edit
    assert old in PLANS
    e = _err(PLANS.replace(old, new, 1))
    assert (e.source, e.line, e.field) == ("plans.toml", line, field), str(e)
    assert msg in e.message and str(e).startswith(f"plans.toml:{line}: {field}:")


def test_structural_errors() -> None:
    e = _err("[[plan]]\nname = 'x'\ncategory = 'fire'\n")
    assert e.field == "require" and e.line == 1
    e = _err("[[plan]\nname='x'")
    assert e.field == "toml" and e.line == 1
    e = _err("[[plan]]\ncategory = 'fire'\n[[plan.require]]\ncapability = 'engine'\n[[plan.require]]\ncapability = 'engine'\n")
    assert e.field == "require.capability" and e.line == 6 and "重复" in e.message
    e = _err(PLANS + '\n[[plan]]\nname = "另一个通用"\ncategory = "fire"\n[[plan.require]]\ncapability = "rescue"\n')
    assert e.field == "plan" and e.line == 37 and "重叠" in e.message and "火灾 通用" in e.message
    e = _err("title = 'x'\n")
    assert e.field == "title"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="无法读取"):
        ResponsePlans.load(tmp_path / "nope.toml")


ODD_TOML = ["5", '"x"', "[]", "{}", "true", "1.5", '[1, "a"]', "1979-05-27", "[[1]]", "{a = 1}", '"*"', "[0]"]


def test_type_confusion_sweep_gives_plan_errors_only() -> None:
    base_plan = {"name": '"x"', "category": '"fire"', "subtype": '"*"', "priority": "[1]"}
    base_req = {"capability": '"engine"', "count": "2"}

    def render(pl: dict[str, str], rq: dict[str, str] | None) -> str:
        s = "[[plan]]\n" + "".join(f"{k} = {v}\n" for k, v in pl.items())
        if rq is not None:
            s += "[[plan.require]]\n" + "".join(f"{k} = {v}\n" for k, v in rq.items())
        return s

    cases = [render({**base_plan, k: v}, None if k == "require" else base_req)
             for k in ("name", "category", "subtype", "priority", "area", "require", "zzz") for v in ODD_TOML]
    cases += [render(base_plan, {**base_req, k: v}) for k in ("capability", "count", "zz") for v in ODD_TOML]
    errors = 0
    for text in cases:
        try:
            ResponsePlans.loads(text, "f.toml")
        except PlanError as e:
            errors += 1
            assert e.source == "f.toml" and e.field
    assert errors > 60

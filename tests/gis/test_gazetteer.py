from __future__ import annotations

import pytest

from gis.gazetteer import Gazetteer, GazetteerError, Place, to_initials, to_pinyin

PLACES = [
    Place("c1", "罗定市", "county", 111.5698, 22.7685, 445381),
    Place("c2", "郁南县", "county", 111.535, 23.234, 445322),
    Place("c3", "云城区", "county", 112.0447, 22.9308, 445302),
    Place("c4", "云安区", "county", 112.0056, 23.0732, 445303),
    Place("c5", "新兴县", "county", 112.2255, 22.696, 445321),
    Place("t1", "素龙街道", "township", 111.60, 22.78, 445381, "罗定市"),
    Place("t2", "罗镜镇", "township", 111.45, 22.55, 445381, "罗定市"),
    Place("t3", "都城镇", "township", 111.53, 23.23, 445322, "郁南县"),
    Place("t4", "六都镇", "township", 112.11, 23.05, 445303, "云安区"),
    Place("v1", "龙岗村", "village", 111.61, 22.79, 445381, "素龙街道"),
    Place("s1", "兴华路", "street", 111.57, 22.77, 445381, "罗城街道"),
    Place("l1", "云浮市人民医院", "landmark", 112.04, 22.92, 445302, aliases=("市人民医院", "云浮人医")),
]


@pytest.fixture()
def gz() -> Gazetteer:
    return Gazetteer(PLACES)


def test_pinyin_helpers() -> None:
    assert to_pinyin("罗定") == "luoding"
    assert to_initials("罗定市") == "lds"


def test_chinese_exact_and_suffixless(gz: Gazetteer) -> None:
    r = gz.search("罗定")
    assert r[0].place.id == "c1" and r[0].score == 100
    assert gz.search("罗定市")[0].place.id == "c1"
    assert gz.search("素龙街道")[0].place.id == "t1"


def test_partial_chinese_names(gz: Gazetteer) -> None:
    r = gz.search("素龙")
    assert r[0].place.id == "t1"
    r = gz.search("人民医院")
    assert r[0].place.id == "l1" and 80 <= r[0].score < 100
    ids = [s.place.id for s in gz.search("罗")]
    assert ids[:2] == ["c1", "t2"]  # prefix matches first, county before township


def test_alias(gz: Gazetteer) -> None:
    r = gz.search("云浮人医")
    assert r[0].place.id == "l1" and r[0].matched == "alias" and r[0].score == 100


def test_full_pinyin_and_prefix(gz: Gazetteer) -> None:
    r = gz.search("luoding")
    assert r[0].place.id == "c1" and r[0].matched == "pinyin"
    r = gz.search("Yun Nan")
    assert r[0].place.id == "c2"
    assert gz.search("ducheng")[0].place.id == "t3"
    r = gz.search("suolong")  # typo for sulong → fuzzy still finds 素龙
    assert r and r[0].place.id == "t1" and r[0].matched == "fuzzy"


def test_initials(gz: Gazetteer) -> None:
    r = gz.search("ld")
    assert r[0].place.id == "c1" and r[0].matched == "initials" and r[0].score == 95
    assert {s.place.id for s in gz.search("ld")} >= {"c1", "t4"}  # 六都 liu du also "ld"
    assert gz.search("xx")[0].place.id == "c5"
    assert gz.search("slj")[0].place.id == "t1"  # 素龙街(道) initials prefix


def test_ranking_is_sorted_and_kind_filter(gz: Gazetteer) -> None:
    r = gz.search("yun")
    assert [s.score for s in r] == sorted((s.score for s in r), reverse=True)
    assert {s.place.id for s in r} >= {"c2", "c3", "c4"}
    assert all(s.place.kind == "township" for s in gz.search("ld", kinds=["township"]))
    assert gz.search("   ") == [] and gz.search("zzzzqqq") == []
    assert gz.search("龙岗")[0].label == "龙岗村（素龙街道）"


def test_bad_places() -> None:
    with pytest.raises(GazetteerError, match="未知类型"):
        Gazetteer([Place("x", "某地", "planet", 0, 0)])
    with pytest.raises(GazetteerError, match="重复"):
        Gazetteer([Place("x", "甲", "village", 0, 0), Place("x", "乙", "village", 0, 0)])
    with pytest.raises(GazetteerError, match="名称为空"):
        Gazetteer([Place("x", " ", "village", 0, 0)])


def test_places_from_real_county_areas(counties_path) -> None:  # type: ignore[no-untyped-def]
    from gis.gazetteer import places_from_areas
    from gis.jurisdictions import load_areas_geojson

    gz = Gazetteer(places_from_areas(load_areas_geojson(counties_path)))
    assert len(gz) == 5
    assert gz.search("ld")[0].place.name == "罗定市"
    assert gz.search("xinxing")[0].place.county_code == 445321
    with pytest.raises(GazetteerError):
        places_from_areas(["not an area"])

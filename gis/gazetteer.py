"""Gazetteer: find places (townships, villages, streets, landmarks) by Chinese name or pinyin.

Call-takers type whatever is fastest: 罗定, 罗定市, "luoding", "ld" (initials), or part of a name
(素龙). Each place is indexed under its name, its name without the administrative suffix (市/县/
区/镇/街道/乡/村), aliases, full toneless pinyin and pinyin initials (pypinyin). Queries are scored
with rapidfuzz and a few explicit rules, so the ranking is explainable:

* exact name/alias (with or without suffix)           100
* exact full pinyin or exact initials                  98 / 95
* name starts with the query / pinyin prefix            90 + share of the name covered (≤ 9)
* query contained in the name                           80 + share covered (≤ 9)
* otherwise rapidfuzz ``ratio`` / ``partial_ratio``     scaled to ≤ 79
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pypinyin import Style, lazy_pinyin
from rapidfuzz import fuzz, process

PLACE_KINDS = ("county", "township", "village", "street", "landmark")
_SUFFIXES = ("街道办事处", "街道", "管理区", "自治县", "市", "县", "区", "镇", "乡", "村委会", "村", "社区")
_CJK = re.compile(r"[\u3400-\u9fff]")
_KIND_RANK = {k: i for i, k in enumerate(PLACE_KINDS)}


@dataclass(frozen=True)
class Place:
    """A named place from the site plan."""

    id: str
    name: str
    kind: str  # one of PLACE_KINDS
    lon: float
    lat: float
    county_code: int | None = None
    parent: str | None = None  # e.g. the township of a village, shown to disambiguate
    aliases: tuple[str, ...] = ()
    approximate: bool = False  # the site plan marks made-up or approximate positions


@dataclass(frozen=True)
class Suggestion:
    """A ranked match with its score (0–100) and what it matched on."""

    place: Place
    score: float
    matched: str  # "name" | "alias" | "pinyin" | "initials" | "fuzzy"

    @property
    def label(self) -> str:
        return f"{self.place.name}（{self.place.parent}）" if self.place.parent else self.place.name


def strip_suffix(name: str) -> str:
    """Drop one administrative suffix (罗定市 → 罗定) unless that would leave < 2 characters."""
    for s in _SUFFIXES:
        if name.endswith(s) and len(name) - len(s) >= 2:
            return name[: -len(s)]
    return name


def to_pinyin(text: str) -> str:
    """Toneless pinyin, syllables joined, lower case ("罗定" → "luoding"); non-CJK kept as is."""
    return "".join(lazy_pinyin(text, style=Style.NORMAL, errors="default")).lower().replace(" ", "")


def to_initials(text: str) -> str:
    """Pinyin initials ("罗定" → "ld")."""
    return "".join(s[0] for s in lazy_pinyin(text, style=Style.FIRST_LETTER) if s).lower()


@dataclass
class _Entry:
    place: Place
    names: tuple[str, ...]  # Chinese keys: name, stripped name, aliases
    pinyins: tuple[str, ...]
    initials: tuple[str, ...]
    alias_set: frozenset[str] = field(default_factory=frozenset)


class GazetteerError(ValueError):
    """Bad place data."""


class Gazetteer:
    """Fuzzy place search over the site plan's places."""

    def __init__(self, places: Iterable[Place]) -> None:
        self._entries: list[_Entry] = []
        seen: set[str] = set()
        for p in places:
            if p.kind not in PLACE_KINDS:
                raise GazetteerError(f"地点 {p.id}: 未知类型 {p.kind!r}（应为 {', '.join(PLACE_KINDS)}）")
            if p.id in seen:
                raise GazetteerError(f"地点编号重复: {p.id}")
            if not p.name.strip():
                raise GazetteerError(f"地点 {p.id}: 名称为空")
            seen.add(p.id)
            keys = [p.name, strip_suffix(p.name)]
            for a in p.aliases:
                keys += [a, strip_suffix(a)]
            names = tuple(dict.fromkeys(keys))
            self._entries.append(
                _Entry(
                    p,
                    names,
                    tuple(dict.fromkeys(to_pinyin(n) for n in names)),
                    tuple(dict.fromkeys(to_initials(n) for n in names)),
                    frozenset(p.aliases) | frozenset(strip_suffix(a) for a in p.aliases),
                )
            )

        # flat key lists for the vectorised fuzzy pass
        self._name_keys = [n for e in self._entries for n in e.names]
        self._name_owner = np.array([i for i, e in enumerate(self._entries) for _ in e.names], dtype=np.intp)
        self._pinyin_keys = [p for e in self._entries for p in e.pinyins]
        self._pinyin_owner = np.array([i for i, e in enumerate(self._entries) for _ in e.pinyins], dtype=np.intp)

    def __len__(self) -> int:
        return len(self._entries)

    def search(self, query: str, limit: int = 10, kinds: Sequence[str] | None = None, min_score: float = 50.0) -> list[Suggestion]:
        """Ranked suggestions for a query in Chinese, full pinyin, initials or part of a name."""
        q = query.strip()
        if not q:
            return []
        cjk = bool(_CJK.search(q))
        ql = q if cjk else re.sub(r"[\s'’-]", "", q.lower())
        if not ql:
            return []
        fuzzy = self._fuzzy(q, ql, cjk)
        out: list[Suggestion] = []
        for i, e in enumerate(self._entries):
            if kinds and e.place.kind not in kinds:
                continue
            score, how = self._rules(e, q, ql, cjk)
            if fuzzy[i] > score:
                score, how = float(fuzzy[i]), "fuzzy"
            if score > 0 and score >= min_score:
                out.append(Suggestion(e.place, round(score, 1), how))
        out.sort(key=lambda s: (-s.score, _KIND_RANK[s.place.kind], len(s.place.name), s.place.id))
        return out[:limit]

    def _fuzzy(self, q: str, ql: str, cjk: bool) -> np.ndarray:
        """Best rapidfuzz score (scaled to ≤ 79) per entry, computed in one vectorised pass."""
        best = np.zeros(len(self._entries))
        if cjk:
            keys, owners, partial_q, use_ratio = self._name_keys, self._name_owner, strip_suffix(q), True
            partial_ok = len(partial_q) >= 2
        else:
            keys, owners, partial_q, use_ratio = self._pinyin_keys, self._pinyin_owner, ql, len(ql) >= 3
            partial_ok = len(ql) >= 4
        if not keys or not use_ratio:
            return best
        scores = process.cdist([ql], keys, scorer=fuzz.ratio)[0].astype(float)
        if partial_ok:
            scores = np.maximum(scores, process.cdist([partial_q], keys, scorer=fuzz.partial_ratio)[0])
        np.maximum.at(best, owners, 0.79 * scores)
        return best

    @staticmethod
    def _rules(e: _Entry, q: str, ql: str, cjk: bool) -> tuple[float, str]:
        """Exact / prefix / contains rules (see the module docstring)."""
        best: tuple[float, str] = (0.0, "fuzzy")

        def take(score: float, how: str) -> None:
            nonlocal best
            if score > best[0]:
                best = (score, how)

        if cjk:
            qs = strip_suffix(q)
            for n in e.names:
                how = "alias" if n in e.alias_set else "name"
                if n in (q, qs):
                    take(100.0, how)
                elif n.startswith(qs):
                    take(90.0 + 9.0 * len(qs) / len(n), how)
                elif qs in n:
                    take(80.0 + 9.0 * len(qs) / len(n), how)
        else:
            for py in e.pinyins:
                if py == ql:
                    take(98.0, "pinyin")
                elif py.startswith(ql) and len(ql) >= 2:
                    take(90.0 + 9.0 * len(ql) / len(py), "pinyin")
            for ini in e.initials:
                if ini == ql:
                    take(95.0, "initials")
                elif ini.startswith(ql) and len(ql) >= 2:
                    take(88.0 + 9.0 * len(ql) / len(ini), "initials")
        return best


def places_from_areas(areas: Iterable[object]) -> list[Place]:
    """Places for the counties/townships of a ``Jurisdictions`` (their centres or a point inside)."""
    from gis.jurisdictions import Area

    out = []
    for a in areas:
        if not isinstance(a, Area):
            raise GazetteerError(f"不是区划: {a!r}")
        if a.center is not None:
            lon, lat = a.center
        else:
            p = a.geometry.representative_point()
            lon, lat = p.x, p.y
        out.append(Place(f"area-{a.code}", a.name, a.level, lon, lat,
                         a.code if a.level == "county" else a.parent_code))
    return out

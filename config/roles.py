"""The roles a user can hold, and their Chinese names."""
from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    CHAIR = "chair"
    OPERATOR = "operator"  # 会控: conference operator beside the chair
    CALLTAKER = "calltaker"  # 接警
    DISPATCHER = "dispatcher"  # 调度
    INSPECTOR = "inspector"  # 纪检监察
    VIEWER = "viewer"
    LEADER = "leader"  # 领导: the read-only command view, dispatch map, plans and resources
    RESPONDER = "responder"  # 单兵: a unit's crew on the field page (/field), bound to one unit


ROLES: tuple[str, ...] = tuple(r.value for r in Role)


def parse_role(value: str) -> Role:
    """The Role named `value`; ValueError naming the allowed roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value!r}; expected one of: {', '.join(ROLES)}") from None

"""Which application takes an incoming SIP call: one explicit, ordered list of routes.

A node has one SIP endpoint, and several features answer calls on it. Each feature exposes an
:class:`InviteRoute`: a name, a matcher (does this INVITE belong to me?) and a handler. The
:class:`InviteRouter` asks the routes in order; the first one whose matcher claims the INVITE
handles it, and a call nobody claims goes to the default handler.

The order is fixed here, in :func:`build_invite_router`, and nowhere else:

1. ``emergency`` - a call to an emergency number (110/119/120/122) goes to the call-taking
   trunk (``dispatch.calltaking.trunk``), whoever the caller is;
2. ``cascade`` - a call from a child node of the site plan (or, on a bridge node, any call)
   goes to cascade admission (``mcu.cascade.admission``);
3. the default - every other call goes to the conference gateway (dial-in with the IVR or a
   conference number).

Features start in any order and add their route with :func:`with_route`, which puts it in its
place in that order, so which handler runs never depends on which feature started first.

Pure: matching is a function of the call; the router does not await the handler itself (the
endpoint does), so it is generic over the handler type and imports no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .dialog import Call

H = TypeVar("H")

# The one order of the named routes (the default, the conferences, comes after them all).
ROUTE_ORDER = ("emergency", "cascade")
DEFAULT = "default"


@dataclass(frozen=True)
class InviteRoute(Generic[H]):
    """One feature's claim on incoming calls: ``claims(call)`` True means ``handler`` takes it."""

    name: str
    claims: Callable[[Call], bool]
    handler: H


class InviteRouter(Generic[H]):
    """Routes in order plus a default; the first route that claims an INVITE handles it."""

    def __init__(self, routes: Iterable[InviteRoute[H]], default: H) -> None:
        self.routes: tuple[InviteRoute[H], ...] = tuple(routes)
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"two INVITE routes with one name: {names}")
        self.default = default

    def claimant(self, call: Call) -> str:
        """The name of the route that takes ``call`` (``"default"`` when no route claims it)."""
        return next((r.name for r in self.routes if r.claims(call)), DEFAULT)

    def handler_for(self, call: Call) -> H:
        """The handler that takes ``call``: the first claiming route's, else the default."""
        return next((r.handler for r in self.routes if r.claims(call)), self.default)

    def route(self, name: str) -> InviteRoute[H] | None:
        """The route called ``name``, if the router has one."""
        return next((r for r in self.routes if r.name == name), None)

    @property
    def names(self) -> list[str]:
        """The route names in the order they are asked, then ``"default"``."""
        return [r.name for r in self.routes] + [DEFAULT]


def build_invite_router(*, conferences: H, emergency: InviteRoute[H] | None = None,
                        cascade: InviteRoute[H] | None = None) -> InviteRouter[H]:
    """The node's router: emergency numbers, then cascade children, then the conferences.

    Each route is optional (a node without a desk has no ``emergency`` route); ``conferences``
    is the default handler, for every call no route claims.
    """
    for route, name in ((emergency, "emergency"), (cascade, "cascade")):
        if route is not None and route.name != name:
            raise ValueError(f"the {name} route is named {route.name!r}")
    return InviteRouter([r for r in (emergency, cascade) if r is not None], conferences)


def with_route(router: InviteRouter[H], route: InviteRoute[H]) -> InviteRouter[H]:
    """``router`` with ``route`` added (or replacing the route of its name), in :data:`ROUTE_ORDER`."""
    if route.name not in ROUTE_ORDER:
        raise ValueError(f"unknown INVITE route {route.name!r}; known: {ROUTE_ORDER}")
    routes = {r.name: r for r in router.routes}
    routes[route.name] = route
    return build_invite_router(conferences=router.default, emergency=routes.get("emergency"),
                               cascade=routes.get("cascade"))


def without_route(router: InviteRouter[H], name: str) -> InviteRouter[H]:
    """``router`` without the route called ``name`` (unchanged when it has none)."""
    return InviteRouter([r for r in router.routes if r.name != name], router.default)


def with_default(router: InviteRouter[H], default: H) -> InviteRouter[H]:
    """``router`` with the same routes and a new default handler (the conference gateway)."""
    return InviteRouter(router.routes, default)


__all__ = ["DEFAULT", "ROUTE_ORDER", "InviteRoute", "InviteRouter", "build_invite_router", "with_default",
           "with_route", "without_route"]

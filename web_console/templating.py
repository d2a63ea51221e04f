"""Page rendering for every console: the Jinja environment, the caller's language and `render`.

The consoles import this module, never `web_console.app`, so the app (which includes the
consoles' routers) sits above them and no console depends on how the app is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from core.runtime import CoreServices
from web_console.auth import LANG_COOKIE
from web_console.i18n import LANGUAGES, translate

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def language_of(request: Request) -> str:
    """?lang= wins, then the cookie, then the configured default (zh-CN)."""
    lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if lang in LANGUAGES:
        return lang
    services: CoreServices = request.app.state.services
    return services.settings.http.default_language


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render a page with the translation helper, the caller and their CSRF token."""
    lang = language_of(request)
    principal = getattr(request.state, "principal", None)
    response = templates.TemplateResponse(
        request, template,
        {"lang": lang, "t": lambda key, **kw: translate(lang, key, **kw), "principal": principal,
         "user": principal.user if principal else None,
         "csrf_token": principal.csrf_token if principal else "", **context},
        status_code=status_code,
    )
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, samesite="strict", max_age=365 * 86400)
    return response

"""The report's PDF on a server whose Chromium is missing: a clear 503 in zh-CN (English on
request), no traceback, and the HTML report still works."""
from __future__ import annotations

import httpx

from tests.conftest import RunningServer

SERVER_ENV = {"CC_DISPATCH__REPORT_CHROMIUM": "/nonexistent/chromium"}


def test_missing_chromium_is_a_clear_503(server: RunningServer) -> None:
    d: httpx.Client = server.login("dispatcher")
    inc = d.post("/api/incidents", json={"category": "flood_control", "subtype": "flood", "priority": 2,
                                         "lon": 111.57, "lat": 22.769})
    assert inc.status_code == 201, inc.text
    iid = inc.json()["id"]
    r = d.get(f"/dispatch/incidents/{iid}/report.pdf")
    assert r.status_code == 503
    assert r.json() == {"detail": "无法生成 PDF：服务器未安装 Chromium（Debian 软件包 chromium），请联系管理员"}
    en = d.get(f"/dispatch/incidents/{iid}/report.pdf?lang=en")
    assert en.status_code == 503 and "Chromium" in en.json()["detail"] and "Traceback" not in en.text
    assert d.get(f"/dispatch/incidents/{iid}/report").status_code == 200
    assert d.get("/dispatch/incidents/NOPE-1/report.pdf").status_code == 404  # unknown first, before printing
    d.close()

"""Settings and site plans: valid files load; bad ones name the file, line and field; the CLI exits non-zero."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import DEMO_DIR, load_settings
from config.site_plan import load_site_plan
from tests.conftest import ROOT


def cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([sys.executable, "-m", "commandcenter", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, input=stdin, env={**os.environ, **(env or {})})


def test_demo_plan_is_complete_and_consistent() -> None:
    plan = load_site_plan(DEMO_DIR / "yunfu.toml")
    assert {c.adcode for c in plan.counties} == {"445302", "445303", "445321", "445322", "445381"}
    per_county = {c.adcode: len(plan.townships_of(c.adcode)) for c in plan.counties}
    assert per_county == {"445302": 8, "445303": 7, "445321": 12, "445322": 15, "445381": 21}
    assert plan.positions_outside_their_county() == []
    assert all(t.position_quality in ("approximate", "made-up") for t in plan.townships)
    demo = next(c for c in plan.conferences if c.id == "80000001")
    assert demo.name == "全市视频会议（演示）" and demo.pin == "" and demo.guests
    assert {u.role for u in plan.users} == {"admin", "chair", "operator", "calltaker", "dispatcher",
                                            "inspector", "viewer", "leader", "responder"}
    cameras = [cam for h in plan.halls for w in h.windows for cam in w.cameras]
    assert len(cameras) >= 8
    assert len(plan.boundaries_geojson["features"]) == 5


def test_settings_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "cc.toml"
    f.write_text('node_name = "county-luoding"\n[http]\nport = 8443\n[emergency]\nnumbers = ["110", "119"]\n')
    s = load_settings(f)
    assert (s.node_name, s.http.port, s.emergency.numbers) == ("county-luoding", 8443, ["110", "119"])
    monkeypatch.setenv("CC_HTTP__PORT", "9000")  # the environment beats the file
    assert load_settings(f).http.port == 9000


@pytest.mark.parametrize("content,line,field,words", [
    ('[http]\nhost = "127.0.0.1"\nport = 70000\n', 3, "http.port", "less than or equal to 65535"),
    ('[http]\nport = "eighty"\n', 2, "http.port", "valid integer"),
    ('[emergency]\nnumbers = ["110", "11O"]\n', 2, "emergency.numbers", "digits only"),
    ('[database]\npool_size = 10\ncolour = "red"\n', 3, "database.colour", "Extra inputs"),
    ('[rtp]\nport_min = 30000\nport_max = 20000\n', None, "rtp", "port_min must be below port_max"),
])
def test_bad_settings_name_file_line_and_field(tmp_path: Path, content: str, line: int | None, field: str,
                                               words: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    message = str(err.value)
    assert str(f) in message and f"field '{field}'" in message and words in message
    if line:
        assert f"{f}:{line}:" in message


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text('[http]\nport = 80\nhost = "unterminated\n')
    with pytest.raises(ConfigError, match=r"broken\.toml:3:\d+: TOML syntax error"):
        load_settings(f)


def test_bad_site_plan_names_the_item(tmp_path: Path) -> None:
    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8")
    bad = tmp_path / "plan.toml"
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    bad.write_text(text.replace('position = [111.57820, 22.76542]', 'position = [222.0, 22.7]', 1), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_site_plan(bad)
    assert "counties.4.position" in str(err.value) and "WGS 84" in str(err.value)
    line = int(str(err.value).split(":")[1])
    assert "222.0" in bad.read_text(encoding="utf-8").splitlines()[line - 1]

    bad.write_text(text.replace('station = "st-luoding-fire"', 'station = "st-nowhere"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown station 'st-nowhere'"):
        load_site_plan(bad)
    bad.write_text(text.replace('role = "dispatcher"', 'role = "emperor"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"users\.\d+\.role.*unknown role 'emperor'"):
        load_site_plan(bad)


def test_cli_config_check(tmp_path: Path) -> None:
    ok = cli("config", "check", str(DEMO_DIR / "yunfu.toml"))
    assert ok.returncode == 0 and "63 townships" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = 0\n")
    result = cli("config", "check", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: field 'http.port'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_bad_config_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nsession_idle_seconds = -5\n")
    result = cli("--config", str(bad), "up")
    assert result.returncode == 2 and "http.session_idle_seconds" in result.stderr
    assert not (tmp_path / "var").exists()


def test_cli_help_everywhere() -> None:
    for args in [[], ["up"], ["db"], ["db", "migrate"], ["user"], ["user", "add"], ["user", "list"],
                 ["user", "passwd"], ["config"], ["config", "check"]]:
        result = cli(*args, "--help")
        assert result.returncode == 0 and "usage: commandcenter" in result.stdout, args


def test_emergency_trunk_and_dispatch_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_EMERGENCY__TRUNK__REGISTRAR", "sip:operator.example:5060")
    monkeypatch.setenv("CC_EMERGENCY__TRUNK__AOR", "sip:110@operator.example")
    monkeypatch.setenv("CC_EMERGENCY__TRUNK__PASSWORD", "pa55-word-secret")
    monkeypatch.setenv("CC_DISPATCH__TRAINING", "false")
    monkeypatch.setenv("CC_DISPATCH__MBTILES", "/srv/tiles.mbtiles")
    s = load_settings()
    assert s.emergency.trunk.aor == "sip:110@operator.example" and s.emergency.desk_sip
    assert s.emergency.trunk.password is not None and "pa55" not in repr(s)
    assert s.dispatch.training is False and str(s.dispatch.mbtiles) == "/srv/tiles.mbtiles"
    monkeypatch.delenv("CC_EMERGENCY__TRUNK__AOR")
    with pytest.raises(ConfigError, match="registrar and aor must be set together"):
        load_settings()


@pytest.mark.parametrize("password,words", [
    ("short-pw", "too short (8 characters; at least 10)"),
    ("Password2024!", "common password"),
    ("qwertyuiop", "common password"),
    ("1234567890", "common password"),
    ("Kx7-long-enough", None),  # strong enough: loads
    ("extension-2001", "common password"),
    ("2001200120", "built from the username"),
    ("0987654321", "common password"),
    ("5678901234", "consecutive keys"),
    ("zzzzzzzzzzzz", "repeated character"),
])
def test_weak_sip_account_passwords_are_refused_naming_the_account(tmp_path: Path, password: str,
                                                                   words: str | None) -> None:
    f = tmp_path / "cc.toml"
    f.write_text(f'[sip]\nrealm = "cc"\n\n[sip.accounts]\n"2001" = "{password}"\n')
    if words is None:
        assert load_settings(f).sip.accounts == {"2001": password}
        return
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    message = str(err.value)
    assert f"{f}:4: field 'sip.accounts'" in message and "account '2001'" in message and words in message
    assert password not in message  # the secret is never echoed


def test_sip_account_password_equal_to_the_extension_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "cc.toml"
    f.write_text('[sip]\naccounts = { "frontdesk01" = "FrontDesk01", "2002" = "Kx7-long-enough" }\n')
    with pytest.raises(ConfigError) as err:
        load_settings(f)
    assert "account 'frontdesk01': password equals the username" in str(err.value)
    assert "2002" not in str(err.value) and f"{f}:2:" in str(err.value)

"""PIDF-LO / INVITE samples shared by the call-taking tests."""
from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

LUODING_LAT, LUODING_LON = 22.7690, 111.5700  # inside Luoding (445381)

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
        'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0" '
        'xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" entity="pres:13800000000@example.cn">'
        '<tuple id="t1"><status><gp:geopriv><gp:location-info>')
TAIL = ('</gp:location-info><gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv></status>'
        '<timestamp>2026-11-21T13:00:00Z</timestamp></tuple></presence>')


def pidf(shape_xml: str) -> str:
    return HEAD + shape_xml + TAIL


def circle(lat: float = LUODING_LAT, lon: float = LUODING_LON, radius: float = 35) -> str:
    return pidf(f'<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{lat} {lon}</gml:pos>'
                f'<gs:radius uom="urn:ogc:def:uom:EPSG::9001">{radius}</gs:radius></gs:Circle>')


POINT = pidf(f'<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{LUODING_LAT} {LUODING_LON}</gml:pos></gml:Point>')
ELLIPSE = pidf(f'<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{LUODING_LAT} {LUODING_LON}</gml:pos>'
               '<gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">120</gs:semiMajorAxis>'
               '<gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">40</gs:semiMinorAxis>'
               '<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">30</gs:orientation></gs:Ellipse>')
POLYGON = pidf('<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing><gml:posList>'
               '22.768 111.569 22.768 111.571 22.770 111.571 22.770 111.569 22.768 111.569'
               '</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>')
CIVIC = pidf('<ca:civicAddress xml:lang="zh-CN"><ca:country>CN</ca:country><ca:A1>广东省</ca:A1>'
             '<ca:A2>云浮市</ca:A2><ca:A3>罗定市</ca:A3><ca:A4>罗城街道</ca:A4><ca:RD>兴华路</ca:RD>'
             '<ca:HNO>12</ca:HNO></ca:civicAddress>')


def multipart_body(pidf_xml: str, sdp: str, cid: str = "loc-1@caller.example.cn",
                   boundary: str = "boundary1") -> tuple[str, str]:
    """(Content-Type, body) of an RFC 6442 INVITE body: SDP + PIDF-LO by value."""
    body = (f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n"
            f"--{boundary}\r\nContent-Type: application/pidf+xml\r\nContent-ID: <{cid}>\r\n\r\n{pidf_xml}\r\n"
            f"--{boundary}--\r\n")
    return f"multipart/mixed;boundary={boundary}", body


# ---------------------------------------------------------------- SIPp callers

SIPP_DIR = Path(__file__).parent / "sipp"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sipp(scenario: str, port: int, calls: int = 1, rate: float = 10.0, service: str = "",
               limit: float = 60.0, local_ip: str = "127.0.0.1", extra: tuple[str, ...] = ()
               ) -> asyncio.subprocess.Process:
    """Start SIPp calling 127.0.0.1:port (an emergency number) with one of tests/dispatch/sipp/*.xml.

    ``local_ip``: the address SIPp binds and sends from (another loopback address plays a stranger)."""
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP_DIR / scenario), f"127.0.0.1:{port}", "-i", local_ip, "-p", str(free_port()),
        *extra,
        "-s", service or ("120" if "pidf" in scenario else "110"), "-m", str(calls), "-l", str(calls),
        "-r", str(rate), "-t", "u1", "-nostdin", "-timeout", f"{int(limit)}s", "-timeout_error",
        "-mp", str(free_port()), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd="/tmp")


async def finish(proc: asyncio.subprocess.Process, within: float = 30.0) -> str:
    """Wait for SIPp; it must exit 0 (every call completed as scripted)."""
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def sipp_call(scenario: str, port: int, service: str = "110", local_ip: str = "127.0.0.1",
              timeout: str = "90s") -> subprocess.Popen[str]:
    """From sync code (a page test): SIPp placing one call of tests/dispatch/sipp/``scenario`` to
    127.0.0.1:port, dialling ``service``, sent from ``local_ip``; wait for it with :func:`finish_sipp`."""
    return subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / scenario), f"127.0.0.1:{port}", "-i", local_ip, "-p", str(free_port()),
         "-s", service, "-m", "1", "-t", "u1", "-nostdin", "-timeout", timeout, "-timeout_error",
         "-mp", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/tmp")


def finish_sipp(proc: subprocess.Popen[str], within: float = 30.0) -> None:
    """Wait for a SIPp started by :func:`sipp_call`; it must have passed (its output's tail otherwise)."""
    out, _ = proc.communicate(timeout=within)
    assert proc.returncode == 0, out[-3000:]

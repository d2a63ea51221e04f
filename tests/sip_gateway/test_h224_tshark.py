"""tshark (Wireshark's H.224 dissector) judges the H.224/H.281 frames our core builds: the CME
hello, Start/Continue/Stop "pan left", presets and the capability exchange, none malformed."""
from __future__ import annotations

from pathlib import Path

from aiortc.rtp import RtpPacket

from sip_gateway.h224 import Action, CameraSource, FeccCapabilities, FeccRules, FeccSession
from tests.sip_gateway.h224_tshark import h224_fields, tshark_h224
from tests.sip_gateway.pcap_writer import write_pcap

PORT, PT = 30002, 100


def test_tshark_decodes_our_h224_frames(tmp_path: Path) -> None:
    mcu = FeccSession()
    camera = FeccSession(FeccRules(camera=FeccCapabilities(6, (CameraSource(1, pan=True, tilt=True, zoom=True),))))
    frames = mcu.start(0.0) + camera.start(0.0)
    frames += mcu.start_action(Action.PAN_LEFT, 1.0) + mcu.continue_action(Action.PAN_LEFT, 1.4)
    frames += mcu.stop_action(Action.PAN_LEFT, 1.6) + mcu.start_action(Action.ZOOM_IN, 2.0)
    frames += mcu.activate_preset(2, 3.0) + mcu.store_preset(5, 3.0) + mcu.select_video_source(1, 3.0)
    packets = [(RtpPacket(payload_type=PT, sequence_number=i, timestamp=i * 96, ssrc=7, payload=f).serialize(),
                40000, PORT) for i, f in enumerate(frames)]
    cap = write_pcap(tmp_path / "h224.pcap", packets)
    rows = h224_fields(cap, PORT, PT, "h224.q922_dlci_pri", "h224.q922_ctl", "h224.standard_client_id",
                       "h224.fecc_message_code", "h224.pan_action", "h224.pan_dir", "h224.zoom_action",
                       "h224.zoom_dir", "h224.timeout", "h224.preset_number", "h224.number_of_presets",
                       "h224.pan_cap", "h224.focus_cap")
    assert len(rows) == len(frames)
    assert all(r[0] == "0x0006" and r[1] == "0x03" for r in rows)  # DLCI 6, UI
    fecc = [r for r in rows if r[2] == "0x01"]
    assert [r[3] for r in fecc] == ["0x01", "0x02", "0x03", "0x01", "0x07", "0x06", "0x04"]
    pan_left = fecc[0]
    assert (pan_left[4], pan_left[5], pan_left[8]) == ("True", "False", "0")  # pan, direction left, 800 ms
    assert (fecc[3][6], fecc[3][7]) == ("True", "True")  # zoom in
    assert [fecc[4][9], fecc[5][9]] == ["2", "5"]
    caps = next(r for r in rows if r[10])
    assert (caps[10], caps[11], caps[12]) == ("6", "True", "False")  # 6 presets, pan, no focus
    verbose = tshark_h224(cap, PORT, PT, "-V")
    assert "START ACTION Request" in verbose and "Pan action: True" in verbose
    assert "Pan direction: Left" in verbose and "(800 milliseconds)" in verbose
    malformed = tshark_h224(cap, PORT, PT, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert malformed.strip() == ""

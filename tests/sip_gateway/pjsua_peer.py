"""pjsua2 (PJSIP) test peer, run as a subprocess by test_sip_pjsua.py.

Registers with digest auth (when ``registrar`` is given), calls a target, sends RFC 4733
digits, plays a tone and records what it hears to a WAV file, then hangs up and prints one JSON line with what happened.
``bind`` (default 127.0.0.1) is the address SIP and RTP use, so tests can call from distinct
loopback sources (127.0.0.2, ...). Usage: python pjsua_peer.py CONFIG_JSON
"""

from __future__ import annotations

import json
import sys
import time

import pjsua2 as pj


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.reg_status: int | None = None
        self.reg_expires = 0

        self.incoming: list[Call] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = Call(self, prm.callId)
        self.incoming.append(call)
        answer = pj.CallOpParam()
        answer.statusCode = 200
        call.answer(answer)

    def onRegState(self, prm: object) -> None:  # noqa: N802 - pjsua2 callback name
        info = self.getInfo()
        self.reg_status = info.regStatus
        self.reg_expires = info.regExpiresSec


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.state = ""
        self.last_status = 0
        self.media_ready = False

    def onCallState(self, prm: object) -> None:  # noqa: N802
        info = self.getInfo()
        self.state = info.stateText
        self.last_status = info.lastStatusCode

    def onCallMediaState(self, prm: object) -> None:  # noqa: N802
        self.media_ready = True


def pump(ep: pj.Endpoint, seconds: float, until: object = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ep.libHandleEvents(10)
        if until is not None and until():  # type: ignore[operator]
            return


def main() -> None:
    cfg = json.loads(sys.argv[1])
    result: dict[str, object] = {}
    ep = pj.Endpoint()
    ep.libCreate()
    ep_cfg = pj.EpConfig()
    ep_cfg.uaConfig.threadCnt = 0
    ep_cfg.uaConfig.mainThreadOnly = True
    ep_cfg.logConfig.level = 3
    ep_cfg.logConfig.consoleLevel = 3
    ep_cfg.medConfig.clockRate = 8000
    ep_cfg.medConfig.sndClockRate = 8000
    ep.libInit(ep_cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    bind = str(cfg.get("bind", "127.0.0.1"))
    tcfg.boundAddress = bind
    tcfg.publicAddress = bind
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU") else 0)

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{cfg['user']}@{bind}"
    if cfg.get("registrar"):
        acfg.regConfig.registrarUri = cfg["registrar"]
        acfg.regConfig.timeoutSec = 120
    if cfg.get("password"):
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", cfg["user"], 0, cfg["password"]))
    acfg.mediaConfig.transportConfig.boundAddress = bind
    acfg.natConfig.sdpNatRewriteUse = 0
    account = Account()
    account.create(acfg)
    if cfg.get("registrar"):
        pump(ep, 5, lambda: account.reg_status is not None)
    result["register_status"] = account.reg_status
    result["register_expires"] = account.reg_expires

    call: Call | None = None
    if cfg.get("target"):
        call = Call(account)
        call.makeCall(cfg["target"], pj.CallOpParam(True))
    elif cfg.get("wait_incoming"):
        print("REGISTERED", flush=True)
        pump(ep, float(cfg["wait_incoming"]), lambda: bool(account.incoming))
        call = account.incoming[0] if account.incoming else None
        result["incoming"] = call is not None
    if call is not None:
        pump(ep, 10, lambda: (call.state == "CONFIRMED" and call.media_ready) or call.state == "DISCONNECTED")
        result["call_state"] = call.state
        if call.state == "CONFIRMED":
            media = call.getAudioMedia(-1)
            recorder = pj.AudioMediaRecorder()
            recorder.createRecorder(cfg["wav"])
            media.startTransmit(recorder)
            tone = pj.ToneDesc()
            tone.freq1 = cfg.get("tone_hz", 600)
            tone.freq2 = cfg.get("tone_hz", 600)
            tone.on_msec = 10_000
            tone.off_msec = 0
            tone.volume = 0
            tones = pj.ToneDescVector()
            tones.append(tone)
            generator = pj.ToneGenerator()
            generator.createToneGenerator(8000, 1)
            generator.play(tones, True)
            generator.startTransmit(media)
            pump(ep, 1.0)
            digits = cfg.get("digits") or []
            for entry in [digits] if isinstance(digits, str) else digits:
                if call.state == "DISCONNECTED":  # e.g. the IVR gave up on us
                    break
                call.dialDtmf(entry)
                pump(ep, cfg.get("digit_pause", 0.3))
            pump(ep, cfg.get("talk_seconds", 3.0), lambda: call.state == "DISCONNECTED")
            if cfg.get("hold"):
                call.setHold(pj.CallOpParam(True))
                pump(ep, 1.0)
                unhold = pj.CallOpParam(True)
                unhold.opt.flag = pj.PJSUA_CALL_UNHOLD
                call.reinvite(unhold)
                pump(ep, 1.0)
                result["after_hold_state"] = call.state
            if call.state != "DISCONNECTED":  # the far end hung up: its media port is gone already
                try:
                    # A hold/unhold re-INVITE may have re-created the call's audio port: take the current one.
                    current = call.getAudioMedia(-1)
                    generator.stopTransmit(current)
                    current.stopTransmit(recorder)
                except pj.Error as exc:  # our own cleanup only; what was heard is already recorded
                    print(f"cleanup: {exc.info() if hasattr(exc, 'info') else exc}", flush=True)
            del recorder
            if call.state != "DISCONNECTED":
                call.hangup(pj.CallOpParam(True))
            pump(ep, 1.5, lambda: call.state == "DISCONNECTED")
            result["end_state"] = call.state
        result["last_status"] = call.last_status
    account.shutdown()
    pump(ep, 0.5)
    print("RESULT " + json.dumps(result), flush=True)
    ep.libDestroy()


if __name__ == "__main__":
    main()

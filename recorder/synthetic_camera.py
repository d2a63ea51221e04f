"""A synthetic RTSP camera for tests and the demo: moving test pattern, wall-clock timecode, label.

Runs GStreamer's RTSP server (Debian gir1.2-gst-rtsp-server-1.0) and therefore needs the
system Python with PyGObject, not the project venv:

    /usr/bin/python3 recorder/synthetic_camera.py --port 8554 --path cam1 --label "窗口1" [--audio]

Serves rtsp://127.0.0.1:PORT/PATH with H.264 (key frame every 2 s) and, with --audio,
AAC. Tests run one process per camera, so one camera can be killed without touching
others; the demo serves all its cameras from one process with repeated
`--mount PATH=LABEL` (each mount its own stream).
"""

from __future__ import annotations

import argparse
import signal
import sys


def pipeline(args: argparse.Namespace, label: str) -> str:
    label = label.replace('"', "'")
    video = (
        f"videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f'! clockoverlay time-format="%Y-%m-%d %H:%M:%S" halignment=right valignment=bottom font-desc="Sans 18" '
        f'! textoverlay text="{label}" halignment=left valignment=top font-desc="Sans 18" '
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.kbps} key-int-max={args.fps * args.gop} "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if not args.audio:
        return f"( {video} )"
    audio = (
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audio/x-raw,rate=48000,channels=1 "
        "! audioconvert ! avenc_aac bitrate=64000 ! rtpmp4gpay name=pay1 pt=97"
    )
    return f"( {video} {audio} )"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="cam")
    parser.add_argument("--label", default="camera")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=2, help="seconds between key frames")
    parser.add_argument("--kbps", type=int, default=600)
    parser.add_argument("--pattern", default="ball")
    parser.add_argument("--audio", action="store_true")
    parser.add_argument("--mount", action="append", default=[], help="PATH=LABEL, repeatable (overrides --path)")
    args = parser.parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = [m.split("=", 1) for m in args.mount] or [[args.path, args.label]]
    for path, label in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(pipeline(args, label))
        factory.set_shared(True)  # every client sees the same live stream, like a real camera
        server.get_mount_points().add_factory(f"/{path}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    signal.signal(signal.SIGINT, lambda *_: loop.quit())
    print(f"ready rtsp://{args.host}:{args.port}/ {' '.join(p for p, _ in mounts)}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`commandcenter`: start the system, migrate the database, manage users, check config files."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config.errors import ConfigError
from config.settings import Settings, load_settings

if TYPE_CHECKING:
    from commandcenter.node import Node

log = logging.getLogger("commandcenter")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="commandcenter",
        description="Video conferencing MCU and emergency command centre.",
    )
    parser.add_argument("--config", metavar="FILE", help="settings TOML (default: $CC_CONFIG or built-in defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the system (embedded PostgreSQL unless DATABASE_URL is set)",
                        description="Start every role in this process, or one role with --role.")
    up.add_argument("--role", choices=["all", "web", "mcu", "recorder", "desk"], default="all")
    up.add_argument("--node-name", help="this node's name in the site plan (default: settings.node_name)")

    db = sub.add_parser("db", help="database tasks").add_subparsers(dest="db_command", required=True, metavar="TASK")
    db.add_parser("migrate", help="apply pending migrations and exit")

    backup = sub.add_parser("backup", help="backups and point-in-time recovery (pgBackRest)").add_subparsers(
        dest="backup_command", required=True, metavar="ACTION")
    backup_run = backup.add_parser("run", help="take a backup now (WAL is archived continuously)")
    backup_run.add_argument("--type", choices=["full", "diff", "incr"], default="incr",
                            help="incr (default; full when none exists yet), diff or full")
    backup.add_parser("list", help="list the backup sets")
    backup_restore = backup.add_parser(
        "restore", help="restore into a fresh data directory as of a moment",
        description="Restore the newest backup before TIME into an empty directory and replay WAL up to "
                    "TIME; start PostgreSQL on it (or make it a new Patroni cluster) and point the "
                    "application at it.")
    backup_restore.add_argument("--to", required=True, metavar="TIME",
                                help="ISO 8601 with a UTC offset, e.g. 2026-12-07T08:30:00+08:00")
    backup_restore.add_argument("--pg-path", required=True, type=Path, metavar="DIR",
                                help="the new cluster's data directory (must be empty or absent)")

    ha = sub.add_parser("ha", help="high availability tasks (docs/ha.md)").add_subparsers(
        dest="ha_command", required=True, metavar="ACTION")
    promote = ha.add_parser(
        "promote-remote", help="promote the remote (different-city) standby cluster to primary",
        description="Remove standby_cluster from the remote site's Patroni configuration (PATCH /config), "
                    "then wait until its node runs as primary. Run it only when the city site is lost.")
    promote.add_argument("--patroni", required=True, metavar="URL",
                         help="the remote site's Patroni REST API, e.g. http://10.20.0.11:8008")
    promote.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                         help="how long to wait for the promotion (default 60)")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True,
                                                                       metavar="ACTION")
    add = user.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", required=True, help="admin, chair, operator, calltaker, dispatcher, inspector, viewer")
    add.add_argument("--display-name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.add_parser("list", help="list users")
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    lock = user.add_parser("lock", help="lock an account by hand (ends its sessions) until unlocked")
    lock.add_argument("username")
    unlock = user.add_parser("unlock", help="lift a hand-set lock and the account's login throttling")
    unlock.add_argument("username")

    audit = sub.add_parser("audit", help="audit log tasks").add_subparsers(dest="audit_command", required=True,
                                                                         metavar="TASK")
    audit_verify = audit.add_parser(
        "verify", help="check the audit log's hash chain; names the first broken row",
        description="Recompute every audit row's hash and link. Exit 0 with a summary when intact; exit 1 "
                    "naming the first edited, deleted or inserted row.")
    audit_verify.add_argument("--anchor", action="append", default=[], metavar="ID:HASH", type=_anchor,
                              help="a row id and hash from an earlier summary, kept outside the database; "
                                   "the row must still have that hash (repeatable)")

    verify = sub.add_parser("verify-export", help="verify an exported evidence bundle offline",
                            description="Check every segment, inclusion proof and the signed tree head "
                                        "of an export bundle; names any segment that fails.")
    verify.add_argument("bundle", type=Path, help="bundle directory or .zip")
    verify.add_argument("--key", type=Path, help="trusted public key (PEM) instead of the bundle's own")

    verify_call = sub.add_parser(
        "verify-call-export", help="verify an exported emergency-call recording offline",
        description="Check the recording's SHA-256 against its transparency-log leaf, the inclusion proof and "
                    "the signed tree head of a call-recording export (.zip); names what is wrong.")
    verify_call.add_argument("bundle", type=Path, help="call-recording export (.zip or directory)")
    verify_call.add_argument("--key", type=Path, help="trusted public key (PEM) instead of the bundle's own")

    cfg = sub.add_parser("config", help="configuration tasks").add_subparsers(dest="config_command", required=True,
                                                                             metavar="TASK")
    check = cfg.add_parser("check", help="validate a settings file or a site plan")
    check.add_argument("file", type=Path)
    return parser


def _anchor(text: str) -> tuple[int, bytes]:
    """`ID:HASH` (HASH = 64 hex digits) for `audit verify --anchor`."""
    row, _, digest = text.partition(":")
    try:
        value = (int(row), bytes.fromhex(digest))
    except ValueError:
        value = (0, b"")
    if value[0] < 1 or len(value[1]) != 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not ID:HASH (a row id and 64 hex digits)")
    return value


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat: "):
            raise ValueError("passwords differ")
        return first
    raise ValueError("no password: use --password-stdin or run in a terminal")


async def _with_services(settings: Settings, work: Callable[..., Awaitable[int]]) -> int:
    from core.runtime import CoreServices

    services = await CoreServices.start(settings, seed=False)
    try:
        return await work(services)
    finally:
        await services.stop()


async def _wait_for_termination() -> None:
    """Block until SIGINT or SIGTERM (roles without the web server)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _print_banner(settings: Settings, seeded: list, web: bool = True) -> None:  # type: ignore[type-arg]
    if web:
        lines = ["", f"commandcenter is running: {settings.base_url}",
                 f"  demo conference: {settings.base_url}/join/80000001"]
    else:
        lines = ["", f"commandcenter node {settings.node_name!r} is running (no web console in this role)"]
    if seeded:
        lines.append("First logins (shown once; only password hashes are stored):")
        lines += [f"  {a.username:<12} {a.password:<20} ({a.role})" for a in seeded]
    else:
        lines.append("Users exist already. Reset a password with: commandcenter user passwd NAME")
    lines.append("Stop with Ctrl-C (or SIGTERM).")
    print("\n".join(lines), flush=True)


async def _up(settings: Settings, role: str) -> int:
    import uvicorn

    from commandcenter.node import Node, start_node
    from core.runtime import CoreServices
    from web_console.app import create_app

    services = await CoreServices.start(settings)
    node = Node(services)  # stops the core services even when a capability fails to start
    try:
        node = await start_node(services, role)
        _serve_rooms(node)
        if role in ("mcu", "recorder", "desk"):
            _print_banner(settings, services.seeded, web=False)
            await _wait_for_termination()
            return EXIT_OK
        # The app's lifespan stops the services: uvicorn re-raises SIGTERM once it has served,
        # so code after `serve()` may never run.
        app = create_app(node, manage_lifecycle=True)
        http = settings.http
        config = uvicorn.Config(
            app, host=http.host, port=http.port, log_level="info", access_log=False,
            ssl_certfile=str(http.tls_certificate) if http.tls_certificate else None,
            ssl_keyfile=str(http.tls_key) if http.tls_key else None,
        )
        server = uvicorn.Server(config)
        _print_banner(settings, services.seeded)
        await server.serve()  # returns on SIGINT/SIGTERM
        return EXIT_OK if server.started else EXIT_FAILED
    finally:
        await node.stop()


def _serve_rooms(node: Node) -> None:
    """Let other nodes (a `--role web` node) operate this node's rooms and desk over node RPC."""
    if node.rpc is None:
        return
    if node.desk is not None:
        from web_console.desk_host import DESK_PREFIX, DeskHostService, LocalDesk

        node.rpc.serve(DeskHostService(LocalDesk(node.desk.service)), DESK_PREFIX)
    recording = node.conference_recording
    if node.mcu is None and recording is not None:  # a recorder node: conferences of the MCU nodes
        from recorder.remote_tap import RemoteLiveSource
        from web_console.conference_host import RecordingHostService

        live = recording.recorder.live
        if isinstance(live, RemoteLiveSource):
            node.rpc.serve(RecordingHostService(recording.recorder, live), "rec.")
    if recording is not None and node.recorder is not None:  # web nodes replay the conferences recorded here
        from web_console.replay_host import REPLAY_PREFIX, LocalReplayHost, ReplayHostService

        node.rpc.serve(ReplayHostService(LocalReplayHost(recording.recorder, node.recorder.service)), REPLAY_PREFIX)
    if node.mcu is None or not node.mcu.conferences.plan_rooms:  # a desk node's call rooms are its own
        return
    from mcu.recording_stream import TAP_PREFIX, TapService
    from web_console.conference_host import LocalRoomHost, RoomHostService

    node.rpc.serve(RoomHostService(LocalRoomHost(node.mcu, recording.recorder if recording is not None else None)),
                   "room.")
    if node.mcu.streaming is not None:  # web nodes proxy this node's live streams to their viewers
        from web_console.stream_host import STREAM_PREFIX, LocalStreamHost, StreamHostService

        node.rpc.serve(StreamHostService(LocalStreamHost(node.mcu.streaming)), STREAM_PREFIX)
    # recorder nodes record this node's conferences through their recording tap streams
    node.rpc.serve(TapService(node.mcu.conferences, node.core.settings.nodes.tap_host), TAP_PREFIX)


def _config_check(path: Path) -> int:
    from config.errors import load_toml
    from config.site_plan import load_site_plan

    data, _ = load_toml(path)
    if "city" in data:
        plan = load_site_plan(path)
        outside = plan.positions_outside_their_county()
        for problem in outside:
            print(f"{path}: warning: {problem}", file=sys.stderr)
        print(f"{path}: site plan OK ({len(plan.counties)} counties, {len(plan.townships)} townships, "
              f"{len(plan.meeting_rooms)} meeting rooms, {len(plan.halls)} halls, {len(plan.units)} units)")
    else:
        load_settings(path)
        print(f"{path}: settings OK")
    return EXIT_OK


def _check_node(settings: Settings, role: str) -> None:
    """Refuse to start an MCU that is not in the plan's [[nodes]] or cascades without a token."""
    if role not in ("mcu", "all"):
        return
    from config.site_plan import load_site_plan
    from mcu.cascade.node_check import cascade_problems

    problems = cascade_problems(settings, load_site_plan(settings.site_plan))
    if problems:
        raise ConfigError(settings.site_plan, problems)


def run(args: argparse.Namespace) -> int:
    if args.command == "config":
        return _config_check(args.file)
    if args.command == "ha":
        from core.db.standby import PromoteError, promote_remote

        try:
            took = promote_remote(args.patroni, args.wait)
        except PromoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"the remote site is primary ({took:.1f} s); point database.url at it")
        return EXIT_OK
    if args.command == "verify-call-export":
        from recorder.verify_call import verify_call_export_cli

        return verify_call_export_cli(str(args.bundle), str(args.key) if args.key else None)
    if args.command == "verify-export":
        from recorder.verify import verify_export_cli

        return int(verify_export_cli(args.bundle, args.key))
    settings = load_settings(args.config)
    if args.node_name if args.command == "up" else False:
        settings.node_name = args.node_name
    if args.command == "up":
        _check_node(settings, args.role)
        return asyncio.run(_up(settings, args.role))
    if args.command == "backup":
        return _backup_command(load_settings(args.config), args)
    if args.command == "db":
        async def migrate(services: object) -> int:
            print("database schema is current")
            return EXIT_OK
        return asyncio.run(_with_services(settings, migrate))
    if args.command == "user":
        return asyncio.run(_with_services(settings, lambda s: _user_command(s, args)))
    if args.command == "audit":
        return asyncio.run(_with_services(settings, lambda s: _audit_verify(s, dict(args.anchor))))
    raise AssertionError(args.command)


async def _user_command(services: object, args: argparse.Namespace) -> int:
    from core.runtime import CoreServices

    assert isinstance(services, CoreServices)
    if args.user_command == "list":
        for u in await services.identity.list_users():
            state = "disabled" if u.disabled else ("locked" if u.is_locked() else "active")
            print(f"{u.username:<16} {u.role.value:<11} {state:<8} {u.display_name}")
        return EXIT_OK
    if args.user_command in ("lock", "unlock"):
        if args.user_command == "lock":
            await services.identity.lock(args.username)
        else:
            await services.identity.unlock(args.username)
        await services.audit.record("cli", f"user.{args.user_command}", args.username)
        print(f"{args.user_command}ed {args.username}")
        return EXIT_OK
    password = _read_password(args.password_stdin)
    if args.user_command == "add":
        await services.identity.create_user(args.username, password, args.role, args.display_name)
        await services.audit.record("cli", "user.create", args.username, detail={"role": args.role})
        print(f"created user {args.username} ({args.role})")
    else:
        await services.identity.set_password(args.username, password)
        await services.audit.record("cli", "user.password", args.username)
        print(f"password changed for {args.username}")
    return EXIT_OK


def _backup_command(settings: Settings, args: argparse.Namespace) -> int:
    from core.db.backup import BackupError, PgBackRest, S3Repository, parse_target_time

    b = settings.backup
    try:
        repository = None
        if b.s3_endpoint is not None and b.s3_key is not None and b.s3_key_secret is not None:
            repository = S3Repository(
                endpoint=b.s3_endpoint, port=b.s3_port, bucket=b.s3_bucket, region=b.s3_region, path=b.s3_path,
                key=b.s3_key.get_secret_value(), key_secret=b.s3_key_secret.get_secret_value(),
                uri_style=b.s3_uri_style, verify_tls=b.s3_verify_tls, ca_file=b.s3_ca_file)
        tool = PgBackRest(b.stanza, b.pgbackrest_config, b.run_as, repository=repository)
        if args.backup_command == "run":
            tool.backup(args.type)
            newest = tool.backups()[-1]
            print(f"backup {newest.label} ({newest.type}) done at {newest.stopped.isoformat()}")
        elif args.backup_command == "list":
            for s in tool.backups():
                print(f"{s.label}  {s.type:4}  {s.started.isoformat()} .. {s.stopped.isoformat()}  "
                      f"{s.database_bytes / 1e6:.1f} MB (repo +{s.repo_bytes / 1e6:.1f} MB)")
        else:
            target = parse_target_time(args.to)
            tool.restore(target, args.pg_path.resolve())
            print(f"restored into {args.pg_path} as of {target.isoformat()}; start PostgreSQL on it to "
                  "replay WAL up to that moment (it promotes itself there)")
            if repository is not None:
                print("note: the restored PostgreSQL fetches WAL with the repository of pgbackrest.conf, "
                      "not with the [backup] s3_* settings")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _audit_verify(services: object, anchors: dict[int, bytes]) -> int:
    from core.audit import verify_chain
    from core.runtime import CoreServices

    assert isinstance(services, CoreServices)
    report = await verify_chain(services.db, anchors)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `commandcenter` console script."""
    from core.identity import IdentityError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except (IdentityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

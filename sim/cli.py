"""`topup-sim`: build, start, inspect and stop the simulated site from one command.

    topup-sim build  --root DIR            build the tree (default layout)
    topup-sim up     --root DIR            build if missing, start the sshd pair, write site.json
    topup-sim status --root DIR            sshd pair, active jobs, submissions, faults
    topup-sim faults --root DIR --set k=v  change faults (JSON values), --reset to defaults
    topup-sim net    --root DIR ...        network faults of the running sshd pair:
        --sftp-cut BYTES --downloads K     the next K SFTP sessions die after BYTES bytes
        --outage jump|login --seconds S    the host is down for S seconds (waits until back)
        --refuse jump|login --connects K   the next K connects are refused (waits until back)
    topup-sim down   --root DIR            stop the sshd pair and every process of the tree
    topup-sim replay FILE --root DIR       run a recorded transcript here, report differences

`up` leaves the two sshd daemons running after the command exits (the demo needs them);
`down` finds them again through their work dir (``DIR/.sim/sshd``) and stops them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sim.faults import parse_assignment
from sim.layout import SiteLayout, default_layout, generated_layout
from sim.site import SimSite, build_site

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RootOpt = Annotated[Path, typer.Option("--root", help="Directory of the simulated site")]


def _sshd_dir(root: Path) -> Path:
    return root / ".sim" / "sshd"


def _sshd_state(root: Path) -> Path:
    return root / ".sim" / "sshd.json"


def _site_json(root: Path) -> Path:
    return root / ".sim" / "site.json"


def _layout(kind: str, rounds: int, dates: int, runs: int) -> SiteLayout:
    if kind == "default":
        return default_layout()
    if kind == "generated":
        return generated_layout(rounds=rounds, dates_per_round=dates, runs_per_date=runs)
    raise typer.BadParameter("layout must be 'default' or 'generated'")


def _open(root: Path) -> SimSite:
    try:
        return SimSite.open(root)
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


def _pair(root: Path, **options: Any) -> Any:
    """The SshPair of this site (its processes found again through the work dir)."""
    from sim.sshd import SshPair

    ports: dict[str, int] = {}
    if _sshd_state(root).is_file():
        ports = json.loads(_sshd_state(root).read_text())
    return SshPair(
        workdir=_sshd_dir(root),
        stop_at_exit=False,
        jump_port=ports.get("jump"),
        login_port=ports.get("login"),
        **options,
    )


@app.command()
def build(
    root: RootOpt,
    layout: Annotated[str, typer.Option(help="default | generated")] = "default",
    rounds: Annotated[int, typer.Option(help="generated layout: rounds")] = 4,
    dates: Annotated[int, typer.Option(help="generated layout: dates per round")] = 20,
    runs: Annotated[int, typer.Option(help="generated layout: runs per date")] = 5,
) -> None:
    """Build the simulated tree under ROOT (which must be empty or absent)."""
    site = build_site(root, _layout(layout, rounds, dates, runs))
    typer.echo(f"built {site.root}")


@app.command()
def up(
    root: RootOpt,
    auth: Annotated[str, typer.Option(help="password (as IHEP) | key | both")] = "password",
    login_name: Annotated[
        str | None, typer.Option(help="Forward to the login node by this name (e.g. beslogin)")
    ] = None,
    real_paths: Annotated[
        bool,
        typer.Option(help="Lay the tree at /besfs5, /bes3fs, /cvmfs, /afs (login node only)"),
    ] = False,
    plain_path_tools: Annotated[
        bool, typer.Option(help="hadd/root on the PATH of a plain exec, as on IHEP")
    ] = True,
) -> None:
    """Build ROOT if missing, start the sshd pair and write ROOT/.sim/site.json.

    With --real-paths the site file keeps IHEP's default paths (the login node sees the
    tree there, in its private mount namespace)."""
    from steps.config import SiteSettings

    root = root.resolve()
    site = SimSite.open(root) if (root / ".sim/layout.json").is_file() else build_site(root)
    pair = _pair(
        root,
        login_name=login_name,
        real_paths=root if real_paths else None,
        plain_path_tools=plain_path_tools,
    )
    pair.start()
    pair.follow_faults(root / ".sim" / "faults.json")
    _sshd_state(root).write_text(json.dumps({"jump": pair.jump_port, "login": pair.login_port}))
    overrides = pair.client_overrides(auth=auth)
    settings = SiteSettings(**overrides) if real_paths else site.settings(**overrides)
    data = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    if auth in ("password", "both"):  # the demo needs them; the file is root-only
        for hop in ("jump", "login"):
            data[hop]["password"] = pair.password
    path = _site_json(root)
    path.write_text(json.dumps(data, indent=1) + "\n")
    path.chmod(0o600)
    typer.echo(f"jump host  127.0.0.1:{pair.jump_port}")
    typer.echo(f"login node 127.0.0.1:{pair.login_port}")
    typer.echo(f"site settings: {path}")
    typer.echo(f"(use it as TOPUP_SITES_DIR={path.parent} with site name 'site')")


@app.command()
def down(root: RootOpt) -> None:
    """Stop the sshd pair and every job and process of the tree."""
    root = root.resolve()
    site = _open(root)
    if _sshd_dir(root).is_dir():
        _pair(root).stop()
    killed = site.stop_jobs()
    left = site.tree_processes()
    typer.echo(f"stopped sshd pair and {killed} process(es); {len(left)} left")
    if left:
        raise typer.Exit(1)


@app.command()
def status(root: RootOpt) -> None:
    """Show the sshd pair, active jobs, submission count and faults."""
    root = root.resolve()
    site = _open(root)
    if _sshd_dir(root).is_dir():
        pair = _pair(root)
        alive = len(pair.processes())
        ports = json.loads(_sshd_state(root).read_text()) if _sshd_state(root).is_file() else {}
        typer.echo(f"sshd: {alive} process(es), ports {ports}")
    else:
        typer.echo("sshd: not started")
    jobs = site.active_jobs()
    typer.echo(f"submissions: {len(site.submissions())}, active jobs: {len(jobs)}")
    for job in jobs:
        typer.echo(f"  {job['id']} {job['state']} {job['jobfile']} ({job['cwd']})")
    typer.echo(f"db ledger: {len(site.db_ledger())} insert(s)")
    typer.echo("faults: " + site.faults().model_dump_json())


@app.command()
def faults(
    root: RootOpt,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value (value parsed as JSON)")
    ] = None,
    reset: Annotated[bool, typer.Option(help="back to the defaults first")] = False,
) -> None:
    """Change the faults of the site (read by its scripts and jobs when they run)."""
    site = _open(root.resolve())
    if reset:
        site.reset_faults()
    changes: dict[str, Any] = {}
    for item in set_ or []:
        try:
            key, value = parse_assignment(item)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        changes[key] = value
    current = site.set_faults(**changes) if changes else site.faults()
    typer.echo(current.model_dump_json(indent=1))


@app.command()
def net(
    root: RootOpt,
    sftp_cut: Annotated[
        int | None, typer.Option(help="bytes of SFTP stream served before the cut", min=0)
    ] = None,
    downloads: Annotated[int, typer.Option(help="SFTP sessions to cut", min=0)] = 1,
    outage: Annotated[str | None, typer.Option(help="jump | login: host down")] = None,
    seconds: Annotated[float, typer.Option(help="outage length", min=0, max=3600)] = 2.0,
    refuse: Annotated[str | None, typer.Option(help="jump | login: refuse connects")] = None,
    connects: Annotated[int, typer.Option(help="connects to refuse", min=1)] = 1,
) -> None:
    """Inject a network fault into the running sshd pair of ROOT (started by ``up``).

    The SFTP cut only leaves tokens behind and returns; an outage or a refusal holds the
    host's port, so this command waits until the host is back (after Ctrl-C the host stays
    down: ``topup-sim down`` then ``up``).
    """
    root = root.resolve()
    if not _sshd_state(root).is_file():
        typer.echo(f"no sshd pair for {root}: run `topup-sim up` first", err=True)
        raise typer.Exit(1)
    for option, value in (("--outage", outage), ("--refuse", refuse)):
        if value is not None and value not in ("jump", "login"):
            raise typer.BadParameter(f"{option} must be jump or login, got {value!r}")
    pair = _pair(root)
    if sftp_cut is not None:
        pair.cut_sftp(sftp_cut, downloads)
        typer.echo(f"next {downloads} SFTP session(s) cut after {sftp_cut} bytes")
    fault = None
    if outage is not None:
        fault = pair.outage(outage, seconds)  # type: ignore[arg-type]
        typer.echo(f"{outage} host down for {seconds:g} s")
    elif refuse is not None:
        fault = pair.refuse_connects(refuse, connects)  # type: ignore[arg-type]
        typer.echo(f"{refuse} host refuses the next {connects} connect(s)")
    if fault is not None:
        while fault.is_alive():
            fault.join(0.5)
        if fault.error is not None:
            typer.echo(f"{outage or refuse} host did not come back: {fault.error}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{outage or refuse} host back")


if __name__ == "__main__":
    app()


@app.command()
def replay(
    transcript: Annotated[Path, typer.Argument(help="`topup transcript <run> --json` output")],
    root: RootOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Replay a transcript against the running site (`up` first); exit 1 if answers differ."""
    from sim.replay import replay as run_replay
    from sim.replay import wait_settled
    from steps.config import SiteSettings
    from steps.remote.site import RemoteSite
    from steps.remote.transcript import TranscriptExport

    root = root.resolve()
    site = _open(root)
    try:
        recorded = TranscriptExport.model_validate_json(transcript.read_text())
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read {transcript}: {exc}", err=True)
        raise typer.Exit(2) from None
    if not _site_json(root).is_file():
        typer.echo(f"{root} is not up (no site.json): run `topup-sim up --root {root}`", err=True)
        raise typer.Exit(2)
    settings = SiteSettings(**json.loads(_site_json(root).read_text()))
    remote = RemoteSite(settings)
    try:
        report = run_replay(recorded, remote, wait_settled(site))
    finally:
        remote.close()
    if as_json:
        typer.echo(report.model_dump_json(indent=1))
    else:
        typer.echo(
            f"{report.commands} commands: {report.compared} compared, {report.skipped} skipped, "
            f"{len(report.differences)} differ"
        )
        for d in report.differences:
            typer.echo(
                f"#{d.index} [{d.step}] {d.command}: {d.field} recorded {d.recorded!r}, "
                f"sim {d.replayed!r}"
            )
    raise typer.Exit(1 if report.differences else 0)

"""RemoteSite: everything the steps do on the remote site, in as few commands as possible.

It composes a Transport (SSH or local) with the scripts of ``detached``, ``polling`` and
``files``. It knows nothing of Prefect or HTTP. See docs/contracts.md ("RemoteSite").
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from steps.config import SitePaths, SiteSettings
from steps.remote import detached as det
from steps.remote import transcript, validate
from steps.remote.detached import Detached
from steps.remote.errors import DownloadError, DownloadMismatch, RemoteError, RemoteTimeout
from steps.remote.files import FileFacts, facts_script, local_facts, parse_facts
from steps.remote.polling import FAILURE_REGEX, PollPlan, PollReport, RunKey
from steps.remote.transport import CommandResult, Transport

log = logging.getLogger("topup.remote")

__all__ = [
    "FAILURE_REGEX",
    "Detached",
    "FileFacts",
    "PollReport",
    "RemoteSite",
    "make_transport",
    "round_export",
]

# Scripts of the remote layer itself are short; they get their own limit.
CONTROL_TIMEOUT = 60.0


def round_export(round: str | None) -> str:
    """``export ROUND_NUMBER=<n> && `` for ``round`` (``round17`` → ``17``), "" for None.

    Why: the site's env script hard-codes ``ROUND_NUMBER`` (18) and the genJob.sh scripts,
    ``mergeHist.sh`` and the ``a.out`` programs build their paths from it, so a command for
    another round must override it after sourcing, or it silently reads round18 data. The
    digits are kept as written: ``round${ROUND_NUMBER}`` must give back the round's name.
    """
    if round is None:
        return ""
    number = validate.round_(round).removeprefix("round")
    return f"export ROUND_NUMBER={number} && "


def make_transport(settings: SiteSettings) -> Transport:
    """The transport ``settings.transport`` names (SSH connects lazily, on first use).

    Imported here so that a local-only process never loads paramiko/fabric.
    """
    if settings.transport == "local":
        from steps.remote.local import LocalTransport

        return LocalTransport()
    from steps.remote.ssh import SshTransport

    return SshTransport(settings)


class RemoteSite:
    """One remote site: commands, detached commands, batch polling, file facts, downloads."""

    def __init__(self, settings: SiteSettings, transport: Transport | None = None) -> None:
        validate.path(settings.control_dir)
        validate.path(settings.env_script)
        self.settings = settings
        self.transport: Transport = transport if transport is not None else make_transport(settings)
        # Masked out of transcript records (they never reach a command, but be sure).
        self._secrets = tuple(
            h.password.get_secret_value()
            for h in (settings.jump, settings.login)
            if h is not None and h.password is not None
        )

    def __repr__(self) -> str:
        return f"RemoteSite({self.settings.transport}:{self.settings.login.host})"

    def paths(self, round: str) -> SitePaths:
        return self.settings.paths(validate.round_(round))

    # ---------------------------------------------------------------- commands
    def run(
        self, command: str, timeout: float | None = None, *, idempotent: bool = False
    ) -> CommandResult:
        """``bash -c`` semantics; never hangs: on timeout the process group is killed on the
        remote and RemoteTimeout raised. A dropped connection is re-opened transparently;
        a command that may have started is run again only when ``idempotent`` (read-only,
        or safe to repeat)."""
        limit = self.settings.command_timeout if timeout is None else timeout
        log.debug("run (limit %.0fs): %.200s", limit, command)
        cwd = transcript.leading_cwd(command)
        with transcript.recording("run", command, cwd, secrets=self._secrets) as rec:
            res = self.transport.run(command, limit, idempotent=idempotent)
            if rec is not None:
                rec.result(res.exit_code, res.stdout, res.stderr)
        return res

    def _control(
        self,
        script: str,
        what: str,
        timeout: float | None = None,
        kind: transcript.Kind = "script",
        answer: Callable[[CommandResult], dict[str, Any]] | None = None,
        cwd: str = "~",
    ) -> CommandResult:
        """Run one of our own scripts; a non-zero exit is a RemoteError."""
        res = self._script(script, what, timeout, kind, answer, cwd)
        if res.exit_code != 0:
            raise RemoteError(f"{what} failed (exit {res.exit_code}): {res.stderr.strip()[:300]}")
        return res

    def _script(
        self,
        script: str,
        what: str,
        timeout: float | None = None,
        kind: transcript.Kind = "script",
        answer: Callable[[CommandResult], dict[str, Any]] | None = None,
        cwd: str = "~",
    ) -> CommandResult:
        """Run a generated script, labelled with a comment so ``stats.history`` says what it
        was (``what`` holds validated values only). ``answer`` parses the result for the
        transcript (only called while a recorder is installed).

        Every such script is idempotent (status, polls and file facts only read; a detached
        start re-attaches to its key instead of starting twice; kill and forget by key can be
        repeated), so the transport may run it again after a dropped connection.
        """
        limit = min(CONTROL_TIMEOUT, self.settings.command_timeout) if timeout is None else timeout
        text = f"# topup: {what}\n{script}"
        with transcript.recording(kind, text, cwd, what, self._secrets) as rec:
            res = self.transport.run(text, limit, idempotent=True)
            if rec is not None:
                rec.result(res.exit_code, res.stdout, res.stderr)
                if answer is not None and res.exit_code == 0:
                    rec.answer(**answer(res))
        return res

    def env_prefix(self, round: str | None = None) -> str:
        """``source <env_script> && `` (quoted; a leading ``~/`` still expands), followed by
        ``round_export(round)`` when a round is given."""
        return f"source {validate.qpath(self.settings.env_script)} && " + round_export(round)

    # --------------------------------------------------------- detached commands
    def start_detached(
        self,
        key: str,
        command: str,
        cwd: str,
        env: bool = True,
        tail_bytes: int = det.DEFAULT_TAIL_BYTES,
        round: str | None = None,
    ) -> Detached:
        """Start ``command`` under setsid/nohup in ``cwd`` (env script sourced first when
        ``env``), in ONE remote command. If ``key`` exists, re-attach: return its status and
        do NOT start again. ``started`` tells which happened.

        ``round`` exports ``ROUND_NUMBER`` after the env script (``round_export``); it is part
        of the recorded command, so the control dir's ``cmd`` shows which round ran.
        """
        script = det.start_script(
            self.settings.control_dir,
            key,
            round_export(round) + command,
            validate.path(cwd),
            self.settings.env_script if env else None,
            tail_bytes,
        )
        params = {"key": key, "command": command, "cwd": cwd, "env": env, "round": round}
        res = self._control(
            script,
            f"start detached {key}",
            kind="detached-start",
            answer=lambda r: {**params, **_detached_answer(r, key)},
            cwd=cwd,
        )
        records, flags = det.parse(res.stdout)
        status = self._one(records, key)
        status.started = "STARTED" in flags
        log.info(
            "detached %s %s (pid %s)",
            key,
            "started" if status.started else f"re-attached: {status.state}",
            status.pid,
        )
        return status

    def detached(
        self,
        key: str,
        tail_bytes: int = det.DEFAULT_TAIL_BYTES,
        running_tail_bytes: int = det.RUNNING_TAIL_BYTES,
    ) -> Detached:
        """Status of ``key`` (state ``missing`` if never started) with output tails."""
        script = det.status_script(self.settings.control_dir, key, running_tail_bytes, tail_bytes)
        res = self._control(
            script,
            f"status detached {key}",
            kind="detached-status",
            answer=lambda r: _detached_answer(r, key),
        )
        records, _ = det.parse(res.stdout)
        return self._one(records, key)

    def wait_detached(
        self, key: str, timeout: float, poll: float = 1.0, tail_bytes: int = det.DEFAULT_TAIL_BYTES
    ) -> Detached:
        """Poll (one command per cycle) until ``key`` is no longer running.

        Returns at once for ``missing``. RemoteTimeout when still running after ``timeout``
        seconds; the command keeps running and a later call can re-attach.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            status = self.detached(key, tail_bytes=tail_bytes, running_tail_bytes=0)
            if status.state != "running":
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteTimeout(f"detached {key}", timeout)
            time.sleep(min(max(poll, 0.01), remaining))

    def kill_detached(self, key: str, grace: float = 5.0) -> bool:
        """Kill the whole process group of ``key`` (TERM, then KILL after ``grace`` s).

        True if it was running and has been signalled; False if it was not running.
        """
        script = det.kill_script(self.settings.control_dir, key, grace)
        res = self._script(script, f"kill detached {key}", max(CONTROL_TIMEOUT, grace + 10))
        _, flags = det.parse(res.stdout)
        killed = "KILLED" in flags
        if killed:
            log.warning("killed detached %s", key)
        return killed

    def list_detached(self, prefix: str = "", tail_bytes: int = 0) -> list[Detached]:
        """Every detached command whose key starts with ``prefix``, in ONE command."""
        script = det.list_script(self.settings.control_dir, prefix, tail_bytes)
        records, _ = det.parse(self._control(script, f"list detached {prefix}*").stdout)
        return sorted(records, key=lambda d: d.key)

    def forget_detached(self, key: str) -> None:
        """Remove a finished control dir (for a deliberate rerun); RemoteError if running."""
        res = self._script(det.forget_script(self.settings.control_dir, key), f"forget {key}")
        if res.exit_code == 3:
            raise RemoteError(f"detached {key} is still running; kill it before forgetting it")
        if res.exit_code != 0:
            raise RemoteError(f"forget of detached {key} failed (exit {res.exit_code})")

    @staticmethod
    def _one(records: list[Detached], key: str) -> Detached:
        for r in records:
            if r.key == key:
                return r
        raise RemoteError(f"no status record for detached {key} in the remote answer")

    # ------------------------------------------------------------------ polling
    def poll_files(
        self,
        directory: str,
        expected: Mapping[RunKey, Sequence[str]],
        anomalies: Sequence[str] = (),
        failure_logs: Mapping[RunKey, Sequence[str]] | None = None,
        failure_regex: str = FAILURE_REGEX,
        jobs_file: str | None = None,
    ) -> PollReport:
        """ONE remote command, whatever the number of runs (see PollReport).

        With ``jobs_file`` (cluster ids, one per line) the same command also asks the batch
        system (``settings.batch_query_cmd``) for those jobs: ``PollReport.batch``.
        """
        plan = PollPlan(
            directory,
            expected,
            anomalies,
            failure_logs,
            failure_regex,
            jobs_file=jobs_file,
            batch_query=self.settings.batch_query_cmd,
        )
        res = self._control(
            plan.script(),
            f"poll of {directory}",
            kind="poll",
            answer=lambda r: _poll_answer(plan.parse(r.stdout)),
            cwd=directory,
        )
        return plan.parse(res.stdout)

    # -------------------------------------------------------------------- files
    def file_facts(self, paths: Sequence[str]) -> dict[str, FileFacts | None]:
        """Size, mtime and sha256 (computed on the remote) of many files in ONE command;
        None for a path that is not a regular file."""
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        for p in paths:
            validate.path(p)
        limit = max(self.settings.command_timeout, CONTROL_TIMEOUT)
        res = self._control(facts_script(paths), f"file facts of {len(paths)} files", limit)
        return parse_facts(paths, res.stdout)

    def download(self, remote_path: str, local_path: Path) -> FileFacts:
        """Fetch ``remote_path`` and verify size and sha256 against the remote's own facts.

        The transport resumes an interrupted transfer; a resumed result that does not match
        (the file changed between the pieces) is fetched once more from scratch. Any failure
        or mismatch then raises DownloadError and leaves nothing at ``local_path`` (an older
        file there is replaced only by a verified one).
        """
        remote_path = validate.path(remote_path)
        local_path = Path(local_path)
        retries = self.transport.stats.retries
        try:
            return self._download_verified(remote_path, local_path)
        except DownloadMismatch as exc:
            if self.transport.stats.retries == retries:
                raise  # one clean transfer that does not match: the file changed under us
            log.warning(
                "resumed download of %s did not verify (%s); fetching it again", remote_path, exc
            )
            return self._download_verified(remote_path, local_path)

    def _download_verified(self, remote_path: str, local_path: Path) -> FileFacts:
        try:
            facts = self.file_facts([remote_path])[remote_path]
        except RemoteError as exc:
            raise DownloadError(f"cannot read facts of {remote_path}: {exc}") from exc
        if facts is None:
            missing = DownloadError(f"remote file {remote_path} does not exist")
            missing.permanent = True
            raise missing
        local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex[:8]}.verify")
        try:
            try:
                with transcript.recording("download", remote_path, "~") as rec:
                    self.transport.get(remote_path, tmp)
                    if rec is not None:
                        rec.record.exit_code = 0
                        rec.answer(size=facts.size, sha256=facts.sha256)
            except DownloadError:
                raise
            except RemoteError as exc:
                raise DownloadError(f"download of {remote_path} failed: {exc}") from exc
            size, sha = local_facts(tmp)
            if size != facts.size or sha != facts.sha256:
                raise DownloadMismatch(
                    f"download of {remote_path} does not match the remote file: got {size} B "
                    f"sha256 {sha[:12]}…, remote {facts.size} B sha256 {facts.sha256[:12]}…"
                )
            os.replace(tmp, local_path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("downloaded %s (%d B, sha256 verified) to %s", remote_path, size, local_path)
        return facts

    def close(self) -> None:
        self.transport.close()


def _detached_answer(res: CommandResult, key: str) -> dict[str, Any]:
    """The transcript's view of a detached status: state and exit code, not the tails."""
    records, flags = det.parse(res.stdout)
    for r in records:
        if r.key == key:
            return {"state": r.state, "exit_code": r.exit_code, "started": "STARTED" in flags}
    return {"state": "unknown"}


def _poll_answer(report: PollReport) -> dict[str, Any]:
    """The transcript's view of a poll: which expected files it found, which runs failed."""
    found = sorted(f"{run}:{name}" for run, names in report.present.items() for name in names)
    missing = sorted(f"{run}:{name}" for run, names in report.missing.items() for name in names)
    return {
        "directory": report.directory,
        "found": found,
        "missing": missing,
        "failed": sorted(str(r) for r in report.failed),
        "complete": sorted(str(r) for r in report.complete),
    }

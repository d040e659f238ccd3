"""Bad-input scenarios: a schema-driven fuzzer against the facade, shell injection through the
facade and directly through every step, download traversal, oversized bodies.

A canary file stands for "the injection executed": every payload tries to create it, and the
tests assert it never appears on the (simulated) remote machine.
"""

from __future__ import annotations

import http.client
import inspect
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FailedHealthCheck, Unsatisfiable
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.states import Cancelled

from flows.definitions import list_definitions
from flows.registry import _collect as step_tasks
from steps import session
from steps.config import SiteSettings
from steps.remote.validate import InvalidValue
from steps.results import StepError
from tests.chaos.report import record
from tests.facade.served import Served
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.chaos

FUZZ_EXAMPLES = int(os.environ.get("TOPUP_FUZZ_EXAMPLES", "12"))


def payloads(canary: Path) -> list[str]:
    """Shell-injection attempts that would each create ``canary`` if they ever ran."""
    c = str(canary)
    return [
        f"250624; touch {c}",
        f"250624 && touch {c}",
        f"$(touch {c})",
        f"`touch {c}`",
        f"250624\ntouch {c}",
        f"250624|touch {c}",
        f"round18'; touch {c}; echo '",
        f'round18"; touch {c}; echo "',
        "../../../../etc/passwd",
        "..",
        "250624 ",
    ]


@pytest.fixture
def canary() -> Iterator[Path]:
    """A path in /tmp (writable by the site user) that only an executed injection creates."""
    path = Path("/tmp") / f"topup-pwned-{uuid.uuid4().hex[:10]}"
    yield path
    assert not path.exists(), "an injection executed"


# ------------------------------------------------------------------------------ fuzzing


def _fuzz_user_runs(stack: PrefectStack, user: str) -> list[Any]:
    with stack.sync_client() as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"facade-user:{user}"])),
            limit=200,
        )


def _cancel_unfinished(stack: PrefectStack, runs: list[Any]) -> int:
    unfinished = [r for r in runs if r.state is None or not r.state.is_final()]
    with stack.sync_client() as client:
        for run in unfinished:
            client.set_flow_run_state(run.id, Cancelled(), force=True)
    return len(unfinished)


def test_schemathesis_finds_no_server_error(stack: PrefectStack, chaos_facade: Served) -> None:
    """Every operation of the facade's OpenAPI document, positive and negative examples,
    with a valid token, against the facade on the real Prefect stack: no 5xx."""
    served = chaos_facade
    user = f"fuzz{uuid.uuid4().hex[:6]}"
    auth = {"Authorization": f"Bearer {served.token_for(user)}"}
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    skipped: list[str] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(base_url=served.base_url, headers=auth, timeout=60)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    server_errors.append(
                        f"{case.method} {case.formatted_path} query={case.query} "
                        f"body={case.body!r:.200} -> {response.status_code} {response.text[:200]}"
                    )

            try:
                call()
            except (Unsatisfiable, FailedHealthCheck):
                # No negative example exists for an operation without inputs.
                skipped.append(f"{operation.label} ({mode.value})")
    started = _fuzz_user_runs(stack, user)
    cancelled = _cancel_unfinished(stack, started)
    total = sum(statuses.values())
    assert total >= len(operations) * 2, statuses
    assert server_errors == [], server_errors
    spread = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    record(
        group="input",
        scenario="schemathesis fuzzing of the OpenAPI document",
        injected=f"{total} generated requests (positive and negative, up to {FUZZ_EXAMPLES} per "
        f"operation and mode) over {len(operations)} operations, valid token, real Prefect",
        outcome=f"zero 5xx; status codes {spread}",
        details=f"schemathesis {schemathesis.__version__}; no negative example for: "
        f"{', '.join(skipped) or 'none'}; flow runs the fuzzer started: {len(started)} "
        f"(cancelled {cancelled})",
    )


# ----------------------------------------------------------------- injection via the facade


def _shell_parameters() -> dict[str, list[str]]:
    """Workflow name → its string parameters (everything a client sends that may reach a
    command line: dates, rounds, site names, step names, operator names)."""
    out: dict[str, list[str]] = {}
    for defn in list_definitions():
        names = [n for n, spec in defn.parameters.items() if spec.type == "string"]
        if names:
            out.setdefault(defn.name, [])
            out[defn.name] = sorted(set(out[defn.name]) | set(names))
    return out


FREE_TEXT = {"approved_by"}


def _valid(defn_name: str) -> dict[str, Any]:
    return {"date": "250624", "round": "round18"} if "standard" in defn_name else {}


def test_injection_through_the_facade_is_rejected(
    offline_chaos_facade: Served, canary: Path
) -> None:
    served = offline_chaos_facade
    attempts: Counter[int] = Counter()
    shell_params = _shell_parameters()
    assert {"date", "round", "site"} <= set(shell_params["topup-standard"])
    with served.client("alice") as c:
        for workflow, names in shell_params.items():
            for name in [*names, "date_param"] if "standard" in workflow else names:
                # Free text (an operator's name) is only recorded: shell payloads only.
                tried = [p for p in payloads(canary) if str(canary) in p or name not in FREE_TEXT]
                for bad in tried:
                    params = {**_valid(workflow), name: bad}
                    for url, body in (
                        ("/api/tasks", {"workflow_name": workflow, "parameters": params}),
                        (f"/api/workflows/{workflow}/validate", {"parameters": params}),
                    ):
                        r = c.post(url, json=body)
                        if r.status_code == 200 and url.endswith("/validate"):
                            # The validate route answers 200 with valid=false.
                            assert r.json()["valid"] is False, (workflow, name, bad, r.text)
                            attempts[400] += 1
                            continue
                        assert r.status_code in (400, 422), (workflow, name, bad, r.text)
                        attempts[r.status_code] += 1
            # Numbers and booleans given as shell text are rejected too.
            defn = next(d for d in list_definitions() if d.name == workflow)
            for name, spec in defn.parameters.items():
                if spec.type in ("number", "integer", "boolean"):
                    params = {**_valid(workflow), name: f"1; touch {canary}"}
                    r = c.post("/api/tasks", json={"workflow_name": workflow, "parameters": params})
                    assert r.status_code == 422, (workflow, name, r.text)
                    attempts[422] += 1
        # Path and query parameters: a workflow name, a download date.
        for bad in payloads(canary):
            r = c.get(f"/api/workflows/{bad.replace(chr(10), '%0A')}")
            assert 400 <= r.status_code < 500, (bad, r.status_code)
            attempts[r.status_code] += 1
        created = c.post("/api/tasks", json={"workflow_name": "available-dates"})
        task_id = created.json()["task_id"]
        for bad in payloads(canary):
            r = c.get(
                f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf", "date": bad}
            )
            assert r.status_code in (400, 422), (bad, r.status_code)
            attempts[r.status_code] += 1
        tasks = c.get("/api/tasks").json()
    assert tasks["total"] == 1  # only the valid task above was created
    assert not canary.exists()
    record(
        group="input",
        scenario="shell injection through the facade",
        injected=f"{sum(attempts.values())} requests with {len(payloads(canary))} payloads (';', "
        "'&&', '$()', backticks, newline, '|', quotes, '../') in every string parameter of "
        "every workflow, in numeric parameters, the workflow name and the download date",
        outcome="every one rejected with 4xx before anything ran; no task created; canary "
        f"never created ({dict(sorted(attempts.items()))})",
    )


# ----------------------------------------------------------------- injection via the steps


# Inputs a step accepts for a uniform call signature but never puts in a command: step0 lists
# a round; the step-8 parts work on a run range and keep the date only as a label.
UNUSED_INPUTS: dict[str, set[str]] = {
    "step0": {"date", "run_key"},
    "step8_range": {"date"},
    **{f"step8_{n}_{phase}": {"date"} for n in (1, 2, 3) for phase in ("prepare", "submit")},
}


def _step_arguments(fn: Any, site: str) -> dict[str, Any]:
    """Valid arguments for a step function (only the inputs each payload replaces vary)."""
    values: dict[str, Any] = {
        "date": "250624",
        "round": "round18",
        "run_key": "chaos-injection",
        "site": site,
        "run_from": 85391,
        "run_to": 85409,
        "approved_by": "chaos",
        "max_wait_minutes": 0.05,
        "poll_seconds": 0.05,
        "submit_job": False,
        "runs": [85391],  # step8_set_aside
        "reason_tag": "chaos",
    }
    return {k: v for k, v in values.items() if k in inspect.signature(fn).parameters}


def test_injection_through_every_step_is_rejected(
    sim: Any,
    ssh_settings: SiteSettings,
    tmp_path: Path,
    canary: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each step task's function, called as a flow run would, with a payload in each of its
    inputs that reaches a command line: refused before any remote command runs."""
    sites = tmp_path / "sites"
    sites.mkdir()
    name = f"inj-{uuid.uuid4().hex[:8]}"
    data = ssh_settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    (sites / f"{name}.json").write_text(json.dumps(data))
    monkeypatch.setenv("TOPUP_SITES_DIR", str(sites))
    session.close_sites()
    attempts = 0
    outcomes: Counter[str] = Counter()
    try:
        remote = session.open_site(name)
        for step, task in sorted(step_tasks().items()):
            args = _step_arguments(task.fn, name)
            ignored = UNUSED_INPUTS.get(step, set())
            targets = [
                k
                for k in ("date", "round", "run_key", "run_from", "run_to")
                if k in args and k not in ignored
            ]
            targets.append("site")
            for target in targets:
                for bad in payloads(canary):
                    attempts += 1
                    with pytest.raises((StepError, InvalidValue, ValueError, LookupError)) as info:
                        task.fn(**{**args, target: bad})
                    outcomes[type(info.value).__name__] += 1
                    if isinstance(info.value, StepError):
                        assert info.value.result.error is not None
                        assert info.value.result.error.code in (22, 20, 70), (
                            step,
                            target,
                            info.value.result.error,
                        )
        commands = remote.transport.stats.commands
    finally:
        session.close_sites()
    assert commands == 0, "a remote command ran although every input was invalid"
    assert not canary.exists()
    assert sim.submissions() == []
    record(
        group="input",
        scenario="shell injection through the steps",
        injected=f"{attempts} calls: every step task ({len(step_tasks())}) with each of "
        f"{len(payloads(canary))} payloads in each input that reaches a shell (date, round, "
        "run key, run range, site name)",
        outcome="all refused by validation before any remote command (0 commands sent); "
        f"no batch submission; canary never created ({dict(outcomes)})",
        submissions=0,
        duplicate_submissions=0,
    )


# ----------------------------------------------------------------------------- downloads


def _raw_get(served: Served, raw_path: str, token: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (httpx would normalise '..' away)."""
    host, port = served.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_download_traversal_and_symlink_escape_are_refused(
    offline_chaos_facade: Served, tmp_path: Path
) -> None:
    served = offline_chaos_facade
    root: Path = served.settings.downloads_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"%PDF- TOP SECRET " + uuid.uuid4().hex.encode()
    (outside / "secret.pdf").write_bytes(secret)
    (outside / "secret.txt").write_bytes(secret)
    run = root / "0b7f3c9e-5a51-4d0e-9d43-2f3c7b0e8f11"
    run.mkdir()
    (run / "fine.pdf").write_bytes(b"%PDF- fine")
    os.symlink(outside / "secret.pdf", run / "link.pdf")
    os.symlink(outside / "secret.txt", root / "top-link.txt")
    os.symlink(outside, root / "linked-dir")
    rel_outside = os.path.relpath(outside, root)
    names = [
        f"../{rel_outside}/secret.pdf",
        f"{run.name}/../../{rel_outside}/secret.pdf",
        f"%2e%2e/{rel_outside}/secret.pdf",
        f"%2E%2E%2F{rel_outside.replace('/', '%2F')}%2Fsecret.pdf",
        f"..%2f{rel_outside}/secret.pdf",
        f"{outside}/secret.pdf",
        f"%2F{str(outside).lstrip('/').replace('/', '%2F')}%2Fsecret.pdf",
        f"/{outside}/secret.pdf",
        f"{run.name}/link.pdf",
        "top-link.txt",
        "linked-dir/secret.pdf",
        f"{run.name}%00.pdf",
        f"{run.name}\\..\\..\\secret.pdf".replace("\\", "%5C"),
    ]
    admin = served.token_for("root", admin=True)  # admins pass ownership: only paths protect
    statuses: Counter[int] = Counter()
    for name in names:
        for prefix in ("/api/downloads/", "/api/downloads/check/"):
            status, body = _raw_get(served, prefix + name, admin)
            assert status in (400, 403, 404), (prefix + name, status, body[:200])
            assert secret not in body and b"TOP SECRET" not in body, (prefix + name, body[:200])
            statuses[status] += 1
    # The legitimate file next to the symlink is served: the refusals are not blanket ones.
    ok_status, ok_body = _raw_get(served, f"/api/downloads/{run.name}/fine.pdf", admin)
    assert (ok_status, ok_body) == (200, b"%PDF- fine")
    with served.client("root", admin=True) as c:
        listed = [f["filename"] for f in c.get("/api/downloads/list").json()["files"]]
    assert listed == [f"{run.name}/fine.pdf"]
    record(
        group="input",
        scenario="download traversal and symlink escape",
        injected=f"{len(names)} names (raw '..', %2e%2e, encoded slashes, absolute paths, NUL, "
        "backslashes, a symlinked file, a symlinked folder, a top-level symlink) on the file "
        "and check routes, as an admin",
        outcome=f"all refused ({dict(sorted(statuses.items()))}), the outside file's bytes "
        "never returned; the real file next to them still served; symlinks not listed",
    )


# ------------------------------------------------------------------------- oversized bodies


def _post_raw(served: Served, path: str, token: str, body: bytes, chunked: bool) -> int:
    host, port = served.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        if chunked:
            pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
            conn.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        # The server may answer 413 and close before the whole body was sent.
        return 413
    finally:
        conn.close()


def test_oversized_bodies_are_refused_with_413(offline_chaos_facade: Served) -> None:
    served = offline_chaos_facade
    limit = served.settings.max_body_bytes
    token = served.token_for("alice")
    filler = "x" * (limit + 1024)
    body = json.dumps(
        {"workflow_name": "available-dates", "task_name": "big", "parameters": {"pad": filler}}
    ).encode()
    results = {}
    for path in ("/api/tasks", "/api/workflows/available-dates/validate"):
        for chunked in (False, True):
            status = _post_raw(served, path, token, body, chunked)
            assert status == 413, (path, chunked, status)
            results[f"{path} ({'chunked' if chunked else 'Content-Length'})"] = status
    with served.client("alice") as c:
        assert c.get("/api/tasks").json()["total"] == 0
        # Just under the limit is parsed normally (a 4xx about the content, not 413).
        small = c.post("/api/tasks", json={"workflow_name": "available-dates", "x": "y" * 1000})
        assert small.status_code == 201, small.text
    record(
        group="input",
        scenario="oversized request bodies",
        injected=f"{len(body)}-byte JSON bodies (limit {limit}) with Content-Length and chunked",
        outcome="413 on every attempt, no task created; a normal body still accepted",
        details=", ".join(results),
    )

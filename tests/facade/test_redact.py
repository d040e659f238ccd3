"""Answers never carry server paths or tracebacks (``facade.redact`` and the test audit)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from facade import redact
from tests.facade.served import ResponseAudit, Served, leak_needles

TRACE = (
    "Encountered exception during execution:\n"
    "Traceback (most recent call last):\n"
    '  File "{app}/flows/procedure.py", line 150, in call\n'
    "    result = task(**kw)\n"
    "StepFailed: step 1.1 (step1_1) failed: cannot read {downloads}/abc/x.pdf\n"
)


def test_traceback_becomes_error_line_and_reference_in_server_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    downloads = tmp_path / "downloads"
    redact.configure(downloads)
    app = str(Path(redact.__file__).resolve().parents[1])
    text = TRACE.format(app=app, downloads=downloads)
    with caplog.at_level(logging.ERROR, logger="topup.facade.redact"):
        out = redact.clean(text)
        again = redact.clean(text)
    assert out == again and out is not None
    assert "Traceback" not in out and str(tmp_path) not in out and app not in out
    assert out.startswith("Encountered exception during execution: StepFailed: step 1.1")
    assert "downloads/abc/x.pdf" in out
    ref = redact.reference(text)
    assert out.endswith(f"(details in the server log, ref {ref})")
    logged = [r.getMessage() for r in caplog.records if ref in r.getMessage()]
    assert (
        len(set(logged)) == 1 and "procedure.py" in logged[0]
    )  # one full text (a handler may record it twice)
    assert redact.clean("plain message") == "plain message"
    assert redact.clean(None) is None


def test_audit_catches_a_leaking_answer(offline_facade: Served) -> None:
    """The audit every served facade runs under really finds a leaked path."""
    needles = leak_needles(offline_facade.settings)
    leaked = f'{{"error": "no such file {offline_facade.settings.downloads_dir}/x"}}'.encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": leaked})

    audit = ResponseAudit(app, needles)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    asyncio.run(audit({"type": "http", "method": "GET", "path": "/x"}, receive, send))
    assert len(audit.violations) == 1 and "GET /x" in audit.violations[0]
    assert sent[-1]["body"] == leaked  # the answer itself is passed on unchanged

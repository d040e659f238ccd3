"""The background artifact sender against the real Prefect test API: order, flush, errors."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_client
from prefect.artifacts import ProgressArtifact, TableArtifact
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.artifact_sender import ArtifactSender
from flows.topup_standard import current_run_id


def _boom(_client: object) -> None:
    raise RuntimeError("the API said no")


@flow(name="artifact-sender-check")
def _send() -> dict[str, object]:
    sender = ArtifactSender(current_run_id())
    ids: dict[str, UUID] = {}
    sender.submit("a failing request", _boom)  # logged and counted, not raised
    sender.create(
        ProgressArtifact(progress=0.0, key="sender-check-progress"),
        then=lambda aid: ids.__setitem__("progress", aid),
    )
    # queued before the create ran: the id is read in the thread, in queue order
    sender.update(lambda: ids.get("progress"), data=100.0, description="all done")
    sender.create(TableArtifact(table=[{"file": "a.pdf", "size": 3}], key="sender-check-files"))
    flushed = sender.close(timeout=30)
    return {"flushed": flushed, "failures": sender.failures, "run": current_run_id()}


def test_sender_keeps_order_survives_errors_and_flushes(prefect_api: None) -> None:
    out = _send()
    assert out["flushed"] is True and out["failures"] == 1
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(out["run"]))])
            )
        )
    by_key = {a.key: a for a in arts}
    assert float(by_key["sender-check-progress"].data) == 100.0  # type: ignore[arg-type]
    assert by_key["sender-check-progress"].description == "all done"
    assert "a.pdf" in str(by_key["sender-check-files"].data)

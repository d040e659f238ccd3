"""Running step 8's sub-steps so that none is ever done twice by a re-run or a retry.

Legacy step 8 repeats every finished sub-step when it runs again, a finished
``-sub_switch 1`` included, and reports every failure as the unknown code 103 (spec
steps-7-8.md §2.9, §6). Here every sub-step is a detached command keyed by flow run, part,
range and sub-step (``steps.step8_parts.part_prefix``):
- a finished and good one is never started again; its recorded result is returned;
- a failed one gets a new attempt (``<key>-2`` ...), and the result says so;
- a real submission that failed or lost its exit status is started again only when a person
  named that attempt (``resubmit_after``); one whose result was lost (72) is left to a human.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steps.remote import validate
from steps.remote.site import Detached, RemoteSite
from steps.step8_parts import SubStep, part_prefix
from steps.step_log import fail, step_logger

MIN = 60.0

SUBSTEP_CODE = 8100  # STEP8_DB_SUBMISSION_FAILED (retry): a failed preparing sub-step
SUBMISSION_CODE = 8101  # (manual): a failed -sub_switch 1; never started again by itself
LOST_CODE = 72  # DATA_INCONSISTENT (manual): a submission's result was lost


def attempts(base: str, known: dict[str, Detached]) -> list[tuple[int, Detached]]:
    """Attempts of sub-step ``base`` (``base``, ``base-2`` ...), oldest first."""
    out = []
    for key, d in known.items():
        if key == base:
            out.append((1, d))
        elif key.startswith(base + "-") and key[len(base) + 1 :].isdigit():
            out.append((int(key[len(base) + 1 :]), d))
    return sorted(out, key=lambda x: x[0])


def known_commands(site: RemoteSite, prefix: str) -> dict[str, Detached]:
    """The detached commands of one part and range already on the site, by key."""
    return {d.key: d for d in site.list_detached(prefix + ".")}


@dataclass
class SubStepDone:
    """A sub-step that finished well: now, or in an earlier attempt (``reused``)."""

    sub: SubStep
    key: str
    detached: Detached
    reused: bool
    previous: list[str]


def _failure(sub: SubStep, d: Detached) -> str | None:
    """Why a finished sub-step counts as failed (None: it succeeded)."""
    if d.exit_code != 0:
        detail = (d.stderr or d.stdout or "").strip()[-300:]
        return f"exit {d.exit_code}" + (f": {detail}" if detail else "")
    if sub.check is not None:
        return sub.check(d.stdout or "")
    return None


def _outputs(status: Detached) -> dict[str, Any]:
    """What a failed sub-step said: its exit code and the tails of its output."""
    return {
        "exit_code": status.exit_code,
        "output": (status.stdout or "")[-4000:],
        "stderr": (status.stderr or "")[-4000:],
    }


def run_substeps(
    site: RemoteSite,
    part: str,
    subs: tuple[SubStep, ...],
    *,
    run_key: str,
    run_from: int,
    run_to: int,
    max_wait_minutes: float,
    poll_seconds: float,
    fields: dict[str, Any],
    resubmit_after: str | None = None,
) -> list[SubStepDone]:
    """Run ``subs`` in order; a finished-and-good sub-step is never started again.

    A submission sub-step whose latest attempt failed or was lost is started again only when
    ``resubmit_after`` names that attempt (a person's decision, recorded by the caller).
    """
    log = step_logger()
    timeout = max_wait_minutes * MIN
    poll = max(0.05, min(poll_seconds, 5.0))
    paths = site.paths(fields["round"])
    prefix = part_prefix(run_key, part, run_from, run_to)
    known = known_commands(site, prefix)
    done: list[SubStepDone] = []
    for sub in subs:
        base = validate.job_key(f"{prefix}.{sub.purpose}")
        earlier = attempts(base, known)
        previous = [d.key for _, d in earlier]
        if earlier:
            n, latest = earlier[-1]
            if latest.state == "running":
                log.info("%s: re-attaching to running %s", sub.id, latest.key)
                status = site.wait_detached(latest.key, timeout=timeout, poll=poll)
            else:
                status = site.detached(latest.key)  # with its output, for the check
            if status.lost and sub.submission:
                fail(
                    part,
                    LOST_CODE,
                    f"{sub.id} {sub.what}: the earlier attempt {latest.key} ended without an "
                    "exit status; whether it reached the database is unknown. Check the "
                    "database by hand before anything is submitted again",
                    data={"substep": sub.id, "key": latest.key},
                    **fields,
                )
            if status.ok and _failure(sub, status) is None:
                log.info("%s %s already done (%s): not run again", sub.id, sub.what, latest.key)
                done.append(SubStepDone(sub, latest.key, status, True, previous[:-1]))
                continue
            why = "lost" if status.lost else _failure(sub, status)
            if sub.submission and resubmit_after != latest.key:
                fail(
                    part,
                    SUBMISSION_CODE,
                    f"{sub.id} {sub.what}: attempt {latest.key} failed ({why}); a real "
                    "submission is never started again without a person's decision that "
                    "names that attempt",
                    data={"substep": sub.id, "key": latest.key, **_outputs(status)},
                    **fields,
                )
            key = validate.job_key(f"{base}-{n + 1}")
            log.warning(
                "%s %s: attempt %d failed (%s); starting attempt %d",
                sub.id,
                sub.what,
                n,
                why,
                n + 1,
            )
        else:
            key = base
        site.start_detached(
            key,
            sub.render(run_from, run_to, site.settings.bosse),
            sub.cwd(paths),
            round=fields["round"],
        )
        status = site.wait_detached(key, timeout=timeout, poll=poll)
        why = _failure(sub, status)
        if why is not None:
            lost = status.lost and sub.submission  # died without an exit status: DB unknown
            code = SUBMISSION_CODE if sub.submission else SUBSTEP_CODE
            fail(
                part,
                LOST_CODE if lost else code,
                f"{sub.id} {sub.what} failed: {why}",
                data={
                    "substep": sub.id,
                    "key": key,
                    **_outputs(status),
                    "previous_attempts": previous,
                    "done": [d.sub.id for d in done],
                },
                **fields,
            )
        done.append(SubStepDone(sub, key, status, False, previous))
    return done


def summary(done: list[SubStepDone]) -> list[dict[str, Any]]:
    """The ``substeps`` of a part's result: each sub-step's key, exit code and reuse."""
    return [
        {
            "substep": d.sub.id,
            "key": d.key,
            "exit_code": d.detached.exit_code,
            "reused": d.reused,
            **({"previous_attempts": d.previous} if d.previous else {}),
        }
        for d in done
    ]

"""The legacy error dictionary: 156 codes operators know, with name, action and severity.

Why data and not classes: the codes, names and actions must stay exactly those of the legacy
dictionaries (spec steps-7-8.md §3.7) so operators recognise them; only the mapping from a
situation to a code is ours (the codes the dictionary *intends*, not the legacy matcher's).

API (stable, used by every step module):

- ``ERRORS: Mapping[int, ErrorInfo]`` — the 156 legacy entries and ours (``ADDED_CODES``:
  crash, held job and missing-job-file codes of the batch waits, 5202/5304 of steps 5.2/5.3,
  8101 of a failed real submission), keyed by code;
- ``error(code) -> ErrorInfo`` — the entry (a copy) with the action this project applies
  (``ACTION_OVERRIDES``); an unknown code gives 103 UNKNOWN_ERROR with action ``"ai"`` and a
  message naming the unknown code;
- ``REQUIRED_DOWNLOAD_CODES`` — the failed downloads of required reports (``manual`` here);
- ``step_of(code) -> str | None`` — the step the code belongs to (``"gen"``, ``"1.1"`` … ``"8"``);
- ``codes_for_step(step) -> list[int]`` — codes of one step (``"1.1"``) or step group (``"1"``).

``message`` holds the English meaning of the entry (the legacy headlines were Chinese).
The table itself is ``steps/errors.tsv``, read once at import; this module gives it its API.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from steps.results import Action, ErrorInfo

UNKNOWN_CODE = 103

# The table (spec steps-7-8.md §3.7) lives in ``errors.tsv`` next to this module, one code a
# line: code, step, name, action, severity, origin, English meaning. ``origin`` is ``legacy``
# for the 156 entries of the legacy dictionary and ``ours`` for our additions:
#
# the legacy codes of the batch waits say TIMEOUT for every incomplete run, and ``retry``. A
# job that crashed, a job the batch system holds and a run the generator made no job file for
# are not fixed by waiting or retrying: they get their own names and go to an operator
# (``manual``) with the evidence at once. The TIMEOUT codes keep their legacy meaning: jobs
# still queued or running at the limit. Also ours: 5202/5304 (steps 5.2/5.3 passed a missing
# shield file or an empty ets_cut.txt silently) and 8101 (a failed real submission, never
# started again without a person).
_TABLE_FILE = "errors.tsv"
_COLUMNS = ("code", "step", "name", "action", "severity", "origin", "meaning")
_ORIGINS = frozenset({"legacy", "ours"})


def _rows() -> list[list[str]]:
    """The table's rows as text fields; the file ships with the package (package-data)."""
    text = resources.files("steps").joinpath(_TABLE_FILE).read_text(encoding="utf-8")
    header, *lines = text.splitlines()
    if tuple(header.split("\t")) != _COLUMNS:
        raise RuntimeError(f"{_TABLE_FILE}: unexpected header")
    rows = [line.split("\t") for line in lines if line.strip()]
    for number, fields in enumerate(rows, start=2):
        if len(fields) != len(_COLUMNS) or fields[5] not in _ORIGINS:
            raise RuntimeError(f"{_TABLE_FILE}: malformed line {number}")
    return rows


def _build() -> tuple[Mapping[int, ErrorInfo], Mapping[int, str], frozenset[int]]:
    """Entries keyed by code (file order), the step of each code and the codes that are ours;
    action and severity are checked by ``ErrorInfo`` against the legacy vocabulary."""
    infos: dict[int, ErrorInfo] = {}
    steps: dict[int, str] = {}
    added: set[int] = set()
    for code_text, step, name, action, severity, origin, message in _rows():
        code = int(code_text)
        if code in infos:
            raise RuntimeError(f"duplicate error code {code}")
        infos[code] = ErrorInfo.model_validate(
            {"code": code, "name": name, "action": action, "severity": severity, "message": message}
        )
        steps[code] = step
        if origin == "ours":
            added.add(code)
    return MappingProxyType(infos), MappingProxyType(steps), frozenset(added)


ERRORS, _STEP_OF, ADDED_CODES = _build()


# A required report whose PDF was built but could not be downloaded (after the SSH layer's
# retries): the five report steps 1.4 (IST), 2.5, 4.2 (the four cut/check PDFs), 5.4 (ETS cut)
# and 6.2 (ETS check). The legacy dictionary says ``continue``, which let a run end "done"
# without the reports the operators validate; here the step fails and an operator decides
# (retry / abort). Codes and names stay the legacy ones; ERRORS keeps the legacy action.
REQUIRED_DOWNLOAD_CODES: frozenset[int] = frozenset({1402, 2503, 4202, 5403, 6203})
ACTION_OVERRIDES: Mapping[int, Action] = MappingProxyType(
    dict.fromkeys(REQUIRED_DOWNLOAD_CODES, "manual")
)


def error(code: int | None) -> ErrorInfo:
    """The entry for ``code`` with the action applied here (``ACTION_OVERRIDES``, else the
    legacy one); unknown codes become 103 UNKNOWN_ERROR (action ai)."""
    if code is not None and code in ERRORS:
        info = ERRORS[code].model_copy()
        if code in ACTION_OVERRIDES:
            info.action = ACTION_OVERRIDES[code]
        return info
    unknown = ERRORS[UNKNOWN_CODE]
    return unknown.model_copy(update={"message": f"{unknown.message} (unknown code {code!r})"})


def step_of(code: int) -> str | None:
    """``"gen"`` for the general codes, ``"1.1"`` … ``"8"`` for step codes, None if unknown."""
    return _STEP_OF.get(code)


def codes_for_step(step: str) -> list[int]:
    """Codes of a step (``"2.4"``) or of a whole group (``"2"`` gives 2.1 … 2.5), sorted."""
    return sorted(code for code, s in _STEP_OF.items() if s == step or s.split(".")[0] == step)

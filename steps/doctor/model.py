"""Results of the doctor: one ``Check`` per concern, gathered in a ``DoctorReport``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "warn", "fail"]


class Check(BaseModel):
    """One check: its verdict, a one-line summary, the evidence, and the fix when not ``pass``.

    ``fix`` names the setting (``TOPUP_...``) or the site-side action that would make the
    check pass; it is empty for a passing check.
    """

    name: str
    status: Status
    summary: str
    evidence: list[str] = Field(default_factory=list)
    fix: str = ""
    seconds: float = 0.0


class DoctorReport(BaseModel):
    """Every check of one doctor run; the site is usable when none failed."""

    site: str
    login: str
    checks: list[Check] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

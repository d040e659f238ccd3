"""What the simulated site holds: rounds, dates, runs and raw-data streams.

The builder turns a `SiteLayout` into a file tree. The default instance reproduces the
real site's shape (spec/site.md): round18 with the 19 runs of a real date, a few more
dates, a date directory without data, an already processed date, and round17.
`generated_layout` makes large layouts for the benchmarks (many dates, several rounds).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

DATE_RE = re.compile(r"^\d{6}$")
ROUND_RE = re.compile(r"^round\d+$")

STREAMS: tuple[str, ...] = ("BBhabha", "GBBhabha", "GDimuon", "GDiphoton", "GEBhabha")

# The 19 runs of the real date 250519/250520 (steps-3-6.md §1.7).
DEFAULT_RUNS: tuple[int, ...] = (
    *range(85383, 85394),
    *range(85396, 85403),
    85406,
)
# Runs in which the simulated 50 Hz search finds windows (everything else is non-topup).
DEFAULT_NOISE_RUNS: tuple[int, ...] = (85391, 85400)


class DateSpec(BaseModel):
    """One data-taking day of a round.

    ``runs`` empty means a date directory in DATA without any raw file (the "empty data"
    path of step 1.1). ``processed`` dates also get the traces of an earlier pass
    (``INJ/{date}``, IST files in calibConst, lines in the cumulative files).
    """

    date: str
    runs: list[int] = Field(default_factory=list)
    processed: bool = False

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        if not DATE_RE.match(v):
            raise ValueError(f"date must be yymmdd, got {v!r}")
        return v

    @field_validator("runs")
    @classmethod
    def _runs(cls, v: list[int]) -> list[int]:
        # genJob.sh takes 5 characters at offset 6 of the raw file name: only 5-digit runs
        # work. 6-digit runs are allowed to reproduce that (the site's scripts unchanged).
        for run in v:
            if not 10000 <= run <= 999999:
                raise ValueError(f"run numbers must have 5 or 6 digits, got {run}")
        return sorted(set(v))


class RoundSpec(BaseModel):
    name: str
    dates: list[DateSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ROUND_RE.match(v):
            raise ValueError(f"round must match ^round\\d+$, got {v!r}")
        return v

    @property
    def number(self) -> int:
        return int(self.name.removeprefix("round"))

    def date(self, date: str) -> DateSpec:
        for spec in self.dates:
            if spec.date == date:
                return spec
        raise KeyError(f"{self.name} has no date {date}")

    @property
    def runs(self) -> list[int]:
        return sorted({r for d in self.dates for r in d.runs})


class SiteLayout(BaseModel):
    """The whole simulated site."""

    rounds: list[RoundSpec]
    streams: list[str] = Field(default_factory=lambda: list(STREAMS))
    # ROUND_NUMBER exported by the environment script (the real ~/w720 exports 18).
    env_round_number: int = 18
    boss_version: str = "7.2.0"
    noise_runs: list[int] = Field(default_factory=lambda: list(DEFAULT_NOISE_RUNS))
    raw_file_bytes: int = Field(256, ge=16, le=1 << 20)

    @model_validator(mode="after")
    def _unique(self) -> SiteLayout:
        names = [r.name for r in self.rounds]
        if len(names) != len(set(names)):
            raise ValueError("round names must be unique")
        for rnd in self.rounds:
            dates = [d.date for d in rnd.dates]
            if len(dates) != len(set(dates)):
                raise ValueError(f"{rnd.name}: dates must be unique")
        return self

    def round(self, name: str) -> RoundSpec:
        for rnd in self.rounds:
            if rnd.name == name:
                return rnd
        raise KeyError(f"no round {name}")

    @property
    def bosse(self) -> str:
        return self.boss_version.replace(".", "")


def default_layout() -> SiteLayout:
    """The layout of the demo and of most tests."""
    round18 = RoundSpec(
        name="round18",
        dates=[
            DateSpec(date="250101", runs=[85001, 85002], processed=True),
            DateSpec(date="250624", runs=list(DEFAULT_RUNS)),
            DateSpec(date="250625", runs=list(range(85410, 85415))),
            DateSpec(date="250626", runs=list(range(85420, 85423))),
            DateSpec(date="250627", runs=[]),
        ],
    )
    round17 = RoundSpec(
        name="round17",
        dates=[
            DateSpec(date="240501", runs=list(range(80001, 80005))),
            DateSpec(date="240502", runs=list(range(80010, 80013))),
        ],
    )
    return SiteLayout(rounds=[round18, round17])


def generated_layout(
    rounds: int = 4,
    dates_per_round: int = 20,
    runs_per_date: int = 5,
    first_round: int = 18,
    streams: int = len(STREAMS),
) -> SiteLayout:
    """A large synthetic layout: ``rounds`` rounds counting down from ``first_round``.

    Dates are consecutive days from 25/06/01 (rolling over the month by simple counting);
    run numbers are unique per round and stay 5-digit.
    """
    if not 1 <= streams <= len(STREAMS):
        raise ValueError(f"streams must be 1..{len(STREAMS)}")
    if not 0 < dates_per_round <= 28 * 6:
        raise ValueError("dates_per_round must be 1..168")
    specs: list[RoundSpec] = []
    for i in range(rounds):
        number = first_round - i
        if number < 0:
            raise ValueError("too many rounds for first_round")
        base_run = 10000 + (number % 9) * 10000
        dates: list[DateSpec] = []
        for d in range(dates_per_round):
            month, day = divmod(d, 28)
            date = f"{25 - i % 10:02d}{6 + month:02d}{day + 1:02d}"
            first = base_run + d * (runs_per_date + 1)
            dates.append(DateSpec(date=date, runs=list(range(first, first + runs_per_date))))
        specs.append(RoundSpec(name=f"round{number}", dates=dates))
    noise = [specs[0].dates[0].runs[0]] if specs and specs[0].dates else []
    return SiteLayout(rounds=specs, streams=list(STREAMS[:streams]), noise_runs=noise)

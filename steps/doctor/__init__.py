"""``topup doctor``: a read-only preflight of a site over the flows' own connection path.

Why: every step has only run against ``sim/``. Before the first real run, the doctor checks
on the real site what the steps assume (hops and host keys, paths and permissions, tools on
the PATH of the steps' shell, writable work and control directories, AFS tokens, free space,
clock skew, detached processes surviving a disconnect) and names the fix for each failure.
It changes nothing on the site except one scratch directory in the control directory, which
it removes. Knows nothing of Prefect or HTTP (the CLI calls ``run_doctor``).
"""

from steps.doctor.model import Check, DoctorReport, Status
from steps.doctor.options import DoctorOptions
from steps.doctor.run import run_doctor

__all__ = ["Check", "DoctorOptions", "DoctorReport", "Status", "run_doctor"]

"""Parsers of the doctor's AFS/Kerberos evidence, on the output formats of OpenAFS
``tokens`` and MIT ``klist`` (the simulated site has neither tool, so these are the only
place their formats are exercised)."""

from __future__ import annotations

from datetime import datetime

import pytest

from steps.doctor.probes import afs_token_expiry, krb_ticket_expiry, remove_scratch_script

TOKENS = """
Tokens held by the Cache Manager:

User's (AFS ID 12345) tokens for afs@ihep.ac.cn [Expires Dec  7 10:00]
   --End of list--
""".splitlines()

KLIST = """Ticket cache: FILE:/tmp/krb5cc_1000
Default principal: topup@IHEP.AC.CN

Valid starting       Expires              Service principal
12/06/2026 09:00:00  12/07/2026 09:00:00  krbtgt/IHEP.AC.CN@IHEP.AC.CN
12/06/2026 09:01:00  12/07/2026 09:00:00  afs/ihep.ac.cn@IHEP.AC.CN
""".splitlines()


def test_afs_tokens_expiry_and_year_wrap() -> None:
    now = datetime(2026, 12, 6, 17, 0)
    assert afs_token_expiry(TOKENS, now) == [datetime(2026, 12, 7, 10, 0)]
    late = [ln.replace("Dec  7", "Jan  2") for ln in TOKENS]
    assert afs_token_expiry(late, now) == [datetime(2027, 1, 2, 10, 0)]
    assert afs_token_expiry(["no tokens"], now) == []


def test_klist_tgt_expiry_only() -> None:
    assert krb_ticket_expiry(KLIST) == [datetime(2026, 12, 7, 9, 0)]
    short = [ln.replace("12/07/2026", "12/07/26") for ln in KLIST]
    assert krb_ticket_expiry(short) == [datetime(2026, 12, 7, 9, 0)]


def test_only_doctor_scratch_dirs_are_removed() -> None:
    assert (
        remove_scratch_script("/h/.topup/ctl/doctor-AbC12345")
        == "rm -rf -- /h/.topup/ctl/doctor-AbC12345"
    )
    assert remove_scratch_script("~/ctl/doctor-AbC12345") == 'rm -rf -- "$HOME"/ctl/doctor-AbC12345'
    for bad in ("/home/topup", "/x/doctor-", "/x/doctor-ab;rm", "/x/../doctor-abcdefgh"):
        with pytest.raises(ValueError):
            remove_scratch_script(bad)

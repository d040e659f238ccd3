"""Site configuration: where the remote site is and how to reach it.

Every remote path the steps use comes from here, so the simulated site can move the
whole tree under its own root. Defaults are the real IHEP values (see spec/site.md).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROUND_RE = re.compile(r"^round\d+$")
BOSS_RE = re.compile(r"^\d+\.\d+\.\d+$")
# A shield file name with exactly one {run}; it must match add_shield.sh's ``shield*.txt``.
SHIELD_PATTERN_RE = re.compile(r"^shield[A-Za-z0-9_.-]*\{run\}[A-Za-z0-9_.-]*\.txt$")


class HostSettings(BaseModel):
    """One SSH hop."""

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "topup"
    password: SecretStr | None = None
    # Name of a Prefect Secret block holding the password, used when ``password`` is unset.
    # Resolved by steps.session (the remote layer never sees anything but the password).
    password_secret_block: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    key_file: Path | None = None


class SiteSettings(BaseSettings):
    """How to reach the site and where its files live.

    Read from the environment with the prefix ``TOPUP_`` (nested fields use ``__``,
    e.g. ``TOPUP_JUMP__HOST``). The legacy variables ``SSH_PASS_LXLOGIN`` and
    ``SSH_PASS_BESLOGIN`` still set the two passwords.
    """

    model_config = SettingsConfigDict(
        env_prefix="TOPUP_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    transport: Literal["ssh", "local"] = "ssh"
    jump: HostSettings | None = HostSettings(host="lxlogin.ihep.ac.cn")
    login: HostSettings = HostSettings(host="beslogin")
    jump_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TOPUP_JUMP_PASSWORD", "SSH_PASS_LXLOGIN")
    )
    login_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TOPUP_LOGIN_PASSWORD", "SSH_PASS_BESLOGIN")
    )
    known_hosts_file: Path = Path("~/.ssh/known_hosts").expanduser()
    # First contact with an unknown host key: refused unless this is set; when set,
    # the new key is stored in known_hosts and a warning is logged.
    accept_new_host_keys: bool = False
    connect_timeout: float = 30.0
    # Transient SSH faults (connect, jump forwarding, session channel, SFTP) are tried again
    # after 0.5, 1, 2, 4, 8, 8 ... s while the waits add up to at most this many seconds;
    # then the failure goes to the step (and its task retries). 0: no retry in the SSH layer.
    # Only the waits count; each attempt is itself bounded by connect_timeout.
    ssh_retry_seconds: float = Field(15.5, ge=0, le=600)
    keepalive_seconds: int = 15
    command_timeout: float = 600.0

    round: str = "round18"
    boss_version: str = "7.2.0"

    topup_root: str = "/besfs5/groups/cal/topup"
    data_root: str = "/bes3fs/offline/data/cal"
    env_script: str = "~/w720"
    container_cmd: str = "/cvmfs/container.ihep.ac.cn/bin/hep_container"
    calib_const_root: str = "/afs/ihep.ac.cn/bes3/offline/CalibConst/OfflineEvtFilter"
    check_db_alg_dir: str = (
        "/besfs5/users/topup/boss720/workarea/workarea-7.2.0/Analysis/"
        "checkDBAlg/checkDBAlg-00-00-00/share"
    )
    # Remote directory holding the control files of detached commands.
    control_dir: str = "~/.topup/ctl"
    # The batch system's queue listing the waits read job states from (``<cmd> -u <user>``):
    # a name on the PATH of a plain SSH command, or an absolute path.
    batch_query_cmd: str = "hep_q"

    downloads_dir: Path = Path("var/downloads")
    poll_seconds: float = 30.0
    # Name of the shield file the ETS-cut program (step 5.1) writes per run with noise windows:
    # doc5's C++ writes shield{run}.txt, its prose says shield_run{run}.txt. Step 5.2 fails
    # (5202, manual) when the date has topup runs but no file of this name.
    shield_file_pattern: str = "shield{run}.txt"

    @field_validator("round")
    @classmethod
    def _round(cls, v: str) -> str:
        if not ROUND_RE.match(v):
            raise ValueError(f"round must match ^round\\d+$, got {v!r}")
        return v

    @field_validator("boss_version")
    @classmethod
    def _boss(cls, v: str) -> str:
        if not BOSS_RE.match(v):
            raise ValueError(f"boss_version must look like 7.2.0, got {v!r}")
        return v

    @field_validator("shield_file_pattern")
    @classmethod
    def _shield_pattern(cls, v: str) -> str:
        if v.count("{run}") != 1 or not SHIELD_PATTERN_RE.match(v):
            raise ValueError(
                "shield_file_pattern must be a file name with one {run}, matching add_shield.sh's "
                f"shield*.txt and made of letters, digits, '_', '.', '-' (got {v!r})"
            )
        return v

    def shield_file(self, run: int) -> str:
        """The shield file name of ``run`` under ``shield_file_pattern``."""
        return self.shield_file_pattern.replace("{run}", str(int(run)))

    def model_post_init(self, __context: object) -> None:
        # The flat legacy password variables fill the hops' passwords when set.
        if self.jump is not None and self.jump_password and self.jump.password is None:
            self.jump = self.jump.model_copy(update={"password": self.jump_password})
        if self.login_password and self.login.password is None:
            self.login = self.login.model_copy(update={"password": self.login_password})

    @property
    def bosse(self) -> str:
        """BOSS version without dots, as in ``InjSigTime_00{run}_720.root``."""
        return self.boss_version.replace(".", "")

    def paths(self, round: str | None = None) -> SitePaths:
        return SitePaths(self, round or self.round)


class SitePaths:
    """Remote paths of one round (notation of spec/steps.md)."""

    def __init__(self, settings: SiteSettings, round: str) -> None:
        if not ROUND_RE.match(round):
            raise ValueError(f"round must match ^round\\d+$, got {round!r}")
        self.s = settings
        self.round = round

    @cached_property
    def base(self) -> str:
        return f"{self.s.topup_root}/{self.round}/DataValid"

    @cached_property
    def inj(self) -> str:
        return f"{self.base}/InjSigTimeCal"

    @cached_property
    def hist(self) -> str:
        return f"{self.base}/hist"

    @cached_property
    def data(self) -> str:
        return f"{self.s.data_root}/{self.round}"

    @cached_property
    def calib_const(self) -> str:
        return f"{self.inj}/calibConst"

    @cached_property
    def interval_plot(self) -> str:
        return f"{self.inj}/Interval_plot"

    @cached_property
    def search_peak(self) -> str:
        return f"{self.base}/Determining_50Hz_cut/search_peak"

    @cached_property
    def check_shield(self) -> str:
        return f"{self.base}/Determining_50Hz_cut/checkShieldCalib"

    @cached_property
    def ets_cut(self) -> str:
        return f"{self.base}/Determining_ETS_cut/ETS_cut"

    @cached_property
    def check_ets_cut(self) -> str:
        return f"{self.base}/Determining_ETS_cut/check_ETScut_CalibConst"

    @cached_property
    def gen_const(self) -> str:
        return f"{self.base}/sub_database/InjSigInterval/genConst"

    @cached_property
    def const_run_from_run_to(self) -> str:
        return f"{self.gen_const}/const_runForm_runTo"

    @cached_property
    def offline_evt(self) -> str:
        return f"{self.base}/sub_database/OfflineEvtFilter"

    @cached_property
    def inj_sig_interval_db(self) -> str:
        return f"{self.s.calib_const_root}/InjSigInterval/{self.s.boss_version}"

    @cached_property
    def inj_sig_time_db(self) -> str:
        return f"{self.s.calib_const_root}/InjSigTime/{self.s.boss_version}/{self.round}"

    @cached_property
    def offline_evt_db(self) -> str:
        return f"{self.s.calib_const_root}/OfflineEvtFilter/{self.s.boss_version}/{self.round}"

    @cached_property
    def check_db_alg(self) -> str:
        return self.s.check_db_alg_dir

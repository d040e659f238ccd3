"""``topup``: run the Topup stack and its workflows from a terminal.

    topup up [--sim]            start and supervise Prefect server + UI, worker, facade
                                (and the simulated site); Ctrl-C or `topup down` stops it
    topup status | down         look at / stop the stack of the data dir (another shell)
    topup run --date 250624     start a run of a workflow deployment and follow it live
    topup attach <flow-run>     follow a running or paused run again, answer its prompts
    topup retry <flow-run>      run a Failed or Crashed run again (Scheduled)
    topup logs <flow-run>       the run's logs (id or name), --follow to keep reading
    topup dates --round R       the dates of a round and which are unprocessed (step 0)
    topup backfill --round R    every unprocessed date of a round, one run after another
    topup token create --user U an API token for the facade (shown once)
    topup doctor [--site NAME]  read-only preflight of a site (exit 1: not usable)
    topup transcript <run>      the run's remote commands (--json: for topup-sim replay)

Settings: TOPUP_STACK_* (topup_cli/settings.py), e.g. TOPUP_STACK_DATA_DIR (default var/).
"""

from __future__ import annotations

import typer

from topup_cli.commands import rounds, runs, stack_cmds, tools
from topup_cli.commands.common import console

__all__ = ["app", "console", "token_app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
token_app = typer.Typer(help="API tokens of the facade", no_args_is_help=True)
app.add_typer(token_app, name="token")

# The commands live in topup_cli/commands/ by concern; registered here, in this order (the
# order `topup --help` lists them).
for _command in (
    stack_cmds.up,
    stack_cmds.status,
    stack_cmds.down,
    runs.run,
    runs.attach,
    runs.retry,
    runs.submit,
    runs.logs,
    rounds.dates,
    tools.doctor,
    tools.transcript,
    rounds.backfill,
):
    app.command()(_command)
token_app.command("create")(tools.token_create)
token_app.command("revoke")(tools.token_revoke)


if __name__ == "__main__":
    app()

"""The remote layer: reach the site (SSH through the jump host, or local bash), run
commands that never hang, detached commands that survive dropped sessions, one-command
batch polling, file facts and verified downloads. Knows nothing of Prefect or HTTP.

Import the pieces from their modules (``steps.remote.site.RemoteSite`` ...); this package
file stays import-light so that ``steps.remote.validate`` does not pull in paramiko.
"""

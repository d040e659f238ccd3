"""The ``topup`` commands by concern; ``topup_cli.main`` registers them on its one app."""

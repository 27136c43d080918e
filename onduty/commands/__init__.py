"""Subcommands of ``onduty``; each module has ``register(subparsers)``."""

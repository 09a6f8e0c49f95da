"""CLI sub-commands. Each module here defines `register(subparsers)`; `controller.cli`
discovers them, so a concern adds its command without editing a central list.

Every command handler returns an exit code (see README: 0 ok, 1 findings/failed,
2 usage or environment error) and raises `CommandError` for an error the operator must
see as one line.
"""

"""One module per `xinstruction` subcommand; each exposes `register(subparsers)`.

A module's `register` adds its parser and sets `func` to a callable taking the parsed args and
returning an exit code.
"""

COMMAND_MODULES = ("filter", "build", "export", "curate", "publish", "card", "xalpacaeval", "eval", "report")

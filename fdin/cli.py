"""``python -m fdin`` command line: ``faces``, ``analyze`` and ``relate``.

Each subcommand lives in :mod:`fdin.commands` as a module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Errors a user can cause (:class:`FdinError`)
end the program with exit code 2 and a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fdin.errors import FdinError

COMMANDS: dict[str, str] = {
    "faces": "fdin.commands.faces",
    "analyze": "fdin.commands.analyze",
    "relate": "fdin.commands.relate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fdin",
        description="Facial dynamics interpretation and interpersonal relation traits.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return int(module.run(args) or 0)
    except FdinError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not bad input: say so in one line unless --debug
        if args.debug:
            raise
        print(f"internal error ({type(error).__name__}): {error}. Re-run with --debug for details.",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

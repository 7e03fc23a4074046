"""fdin web demo: ``python app.py [--host HOST] [--port PORT]`` (``make demo``; Hugging Face Space entry).

Where it listens: ``--host/--port`` if given, else Gradio's ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``,
else 0.0.0.0:7860 on a Space (``SPACE_ID`` set), else 127.0.0.1:7860. The app lives in :mod:`fdin.app`;
this file sets the environment, makes the example media once (cache folder), builds and launches.

Everything the running app writes is owner-only (``umask 077``) and lives in one private folder per
instance (:mod:`fdin.app.storage`): purged while running, leftovers of earlier runs removed at start,
the whole folder removed at a normal stop (SIGTERM, SIGINT).
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from fdin.app import (  # after the environment is set
    build_demo,
    launch_kwargs,
    queue_kwargs,
    server_address,
    storage,
)
from fdin.app.examples import examples_mode, prepare_examples
from fdin.app.predictors import LazyPredictors, preload
from fdin.app.settings import preload_enabled


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Launch the fdin web demo.")
    parser.add_argument("--host", help="interface (default: $GRADIO_SERVER_NAME, 0.0.0.0 on a Space, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.umask(0o077)  # uploads, results and scratch files hold faces: owner-only from the first byte
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    storage.limit_malloc_arenas()  # before the server's worker threads exist (memory stays flat)
    store = storage.install()  # removes leftovers of earlier runs; Gradio's cache goes in here
    store.remove_at_exit()  # SIGTERM/SIGINT/exit remove this instance's uploads, results and scratch
    try:
        if examples_mode() != "off":
            prepare_examples()  # generated once into the cache folder; later starts find them there
        host, port = server_address(args.host, args.port)
        predictors = LazyPredictors()
        if preload_enabled():
            preload(predictors)  # models load in the background while the server starts
        build_demo(predictors).queue(**queue_kwargs()).launch(**launch_kwargs(host=host, port=port))
    finally:
        store.close()


if __name__ == "__main__":
    main()

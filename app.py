"""fdin web demo: ``python app.py [--host 127.0.0.1] [--port 7860]`` (``make demo``; Hugging Face Space entry).

The UI lives in :mod:`fdin.ui` (the only gradio module); this file only sets the environment, builds
the demo (cheap: models load on first use) and launches it with the hardened settings.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from fdin.ui import build_demo, launch_kwargs, queue_kwargs  # after the environment is set

demo = build_demo()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Launch the fdin web demo.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="interface to listen on (default 127.0.0.1; a Space uses 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)),
                        help="port (default: $PORT or 7860)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    demo.queue(**queue_kwargs()).launch(**launch_kwargs(host=args.host, port=args.port))


if __name__ == "__main__":
    main()

"""`python -m runway_sim [--host H] [--port P]`: run the Runway API simulator.

Everything else comes from `RUNWAY_SIM_*` environment variables (see `Settings`).
"""

from __future__ import annotations

import argparse

from runway_sim.server import build_server
from runway_sim.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="runway_sim", description=__doc__)
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8100)")
    parser.add_argument("--log-level", help="uvicorn log level (default info)")
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if value is not None
    }
    settings = Settings().model_copy(update=overrides)
    build_server(settings).run()


if __name__ == "__main__":
    main()

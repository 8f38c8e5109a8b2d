"""``chainsense serve`` with a cProfile switch, for ``bench/ingest.py --profile``.

    python bench/_server.py PROFILE_PATH

Serves the same app the same way as ``python -m chainsense serve`` (settings from the
``CHAINSENSE_*`` environment, one uvicorn worker). SIGUSR1 starts a new profile of the event
loop's thread; SIGUSR2 stops it and writes it to PROFILE_PATH (atomically: the file appears
complete), so each profile covers one timed window, not startup or device registration.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from chainsense.api import create_app
from chainsense.config import Settings


def main() -> None:
    if len(sys.argv) != 2:
        # `make bench` runs every bench/*.py: this helper has nothing to measure on its own.
        print("bench/_server.py is a helper of bench/ingest.py --profile: nothing to run alone")
        return
    path = Path(sys.argv[1])
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: FrameType | None) -> None:
        nonlocal profiler
        profiler = cProfile.Profile()
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        partial = path.with_name(path.name + ".partial")
        profiler.dump_stats(partial)
        os.replace(partial, path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()

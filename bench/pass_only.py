"""segaudit's streaming pass alone: what a scan costs before it writes anything.

    python bench/pass_only.py DATASET WORKERS

Opens the folder dataset as `segaudit scan DATASET` does and runs the streaming pass
(:func:`segaudit.engine.stream.stream`: every mask decoded and every prediction read
once, in WORKERS threads, through the compiled kernel) into a sink that keeps nothing:
no per-pixel arrays, no records, no cut, no issue masks, no regions, no tables. The
distance from this row to the decode pass is what the pass itself adds; from this row
to `segaudit scan`, what the run's outputs cost. Prints one JSON line with the seconds
the pass took (``seconds``) and those from the start of the process (``total_s``).
"""

from __future__ import annotations

import json
import os
import sys
import time

START = time.perf_counter()
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # as the segaudit command sets it

import numpy as np  # noqa: E402

from segaudit.engine.params import Execution, Params  # noqa: E402
from segaudit.engine.sinks import MemorySink  # noqa: E402
from segaudit.engine.stream import stream  # noqa: E402
from segaudit.sources import DatasetSpec, open_dataset  # noqa: E402


class NothingKept(MemorySink):
    """A sink that drops every per-pixel array and record the pass hands it."""

    def create(self, *args: object, **kwargs: object) -> None:
        pass

    def write(self, *args: object, **kwargs: object) -> None:
        pass

    def add_records(self, *args: object, **kwargs: object) -> None:
        pass


def main() -> None:
    dataset = open_dataset(DatasetSpec(dataset=sys.argv[1]))
    workers = int(sys.argv[2])
    params = Params(ignore_index=dataset.ignore_index)
    clock = time.perf_counter()
    stats = stream(dataset, params, NothingKept(), Execution(workers=workers))
    now = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": now - clock,
                "total_s": now - START,
                "images": int(stats.extent.num_images),
                "workers": workers,
                "scored_pixels": int(np.sum(stats.scored)),
            }
        )
    )


if __name__ == "__main__":
    main()

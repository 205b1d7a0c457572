"""``python -m recgym.benchmarks.throughput``: the same as ``recgym bench throughput``."""

import sys

from recgym.benchmarks.throughput.runner import main

sys.exit(main())

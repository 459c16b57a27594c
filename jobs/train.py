"""spark-submit entry point: ``spark-submit jobs/train.py --data URI [--workers N] ...``.

The same arguments as ``pipeline train``, with ``--launcher spark`` by default: the Horovod
ranks run as Spark tasks on the executors (``horovod.spark.run``).
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--launcher", "spark", *sys.argv[1:]]))

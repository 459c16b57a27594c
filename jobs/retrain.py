"""spark-submit entry point: ``spark-submit jobs/retrain.py [--config FILE] [key=value ...]``.

The same arguments as ``pipeline retrain``: new raw files -> a new dataset version -> a
challenger -> promotion. Exit status 75: another retrain holds the lock (nothing done).
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))

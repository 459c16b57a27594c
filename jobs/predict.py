"""spark-submit entry point: ``spark-submit jobs/predict.py --model URI --input URI --output URI``.

The same arguments and behaviour as ``pipeline predict``.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))

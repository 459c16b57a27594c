"""spark-submit entry point: ``spark-submit jobs/ingest_images.py --input URI --output URI ...``.

The same arguments and behaviour as ``pipeline ingest images``.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", "images", *sys.argv[1:]]))

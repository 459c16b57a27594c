"""spark-submit entry point: ``spark-submit jobs/ingest_text.py --input URI --output URI ...``.

The same arguments and behaviour as ``pipeline ingest text``.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", "text", *sys.argv[1:]]))

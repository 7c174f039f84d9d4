import sys

from pointserve.cli import main

sys.exit(main())

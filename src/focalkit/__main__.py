import sys

from focalkit.cli import main

sys.exit(main())

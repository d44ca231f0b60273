import sys

from pycrio.cli import main

sys.exit(main())

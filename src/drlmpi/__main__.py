import sys

from drlmpi.cli import main

sys.exit(main())

import sys

from tokencost.cli import main

sys.exit(main())

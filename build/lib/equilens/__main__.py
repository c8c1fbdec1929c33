import sys

from equilens.cli import main

sys.exit(main())

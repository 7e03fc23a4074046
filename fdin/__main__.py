import sys

from fdin.cli import main

sys.exit(main())

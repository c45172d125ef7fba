import sys

from commandcentre.cli import main

sys.exit(main())

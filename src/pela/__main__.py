import sys

from pela.cli.app import main

sys.exit(main())

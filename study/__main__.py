import sys

from study.run.cli import main

sys.exit(main())

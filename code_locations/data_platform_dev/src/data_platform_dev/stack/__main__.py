import sys

from data_platform_dev.stack.cli import main

sys.exit(main())

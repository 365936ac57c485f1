import sys

from cnnscope.cli import main

sys.exit(main())

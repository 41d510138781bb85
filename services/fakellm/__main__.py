"""``python -m services.fakellm``: run the fake provider."""

import sys

from services.fakellm.main import run

sys.exit(run(sys.argv[1:]))

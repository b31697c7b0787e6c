"""The test session's probe cache (droplab.host) lives in a folder of its own, not in the user's ~/.cache."""

import os
import tempfile

os.environ.setdefault("DROPLAB_CACHE_DIR", tempfile.mkdtemp(prefix="droplab-test-cache-"))

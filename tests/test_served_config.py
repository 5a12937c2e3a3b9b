"""How the served app is configured, read back through Streamlit's own config loader from the project folder."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

READ = ("import json; from streamlit import config; "
        "print(json.dumps({name: config.get_option(name) for name in "
        "('runner.fastReruns', 'server.fileWatcherType', 'server.address')}))")


def test_one_script_thread_per_session_and_no_source_watching():
    """No second script thread beside a stopped one that is still computing (it would write the session's
    state while the new one reads it), no re-walking of the folder, and this machine only by default."""
    options = json.loads(subprocess.run([sys.executable, "-c", READ], cwd=ROOT, capture_output=True, text=True,
                                        check=True, timeout=120).stdout)
    assert options == {"runner.fastReruns": False, "server.fileWatcherType": "none", "server.address": "127.0.0.1"}

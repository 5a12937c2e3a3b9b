"""The served app's Streamlit settings that keep one session's runs apart."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

READ_OPTION = ("from streamlit import config; config.get_config_options(force_reparse=True); "
               "print(config.get_option('runner.fastReruns'))")


def test_a_rerun_waits_for_the_running_script_instead_of_starting_beside_it():
    # With fast reruns, a widget change during a run starts a second run of the same session in a new thread while
    # the old one goes on computing; both use one session state, so one can write it while the other iterates it.
    shown = subprocess.run([sys.executable, "-c", READ_OPTION], cwd=ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"

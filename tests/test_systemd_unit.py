"""The systemd unit: verify is clean and the security exposure is 2.0 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "parti-notifier.service"

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def installed_unit(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this checkout's console script.
    script = Path(sys.executable).parent / "notifier"
    unit = tmp_path / "parti-notifier.service"
    unit.write_text(UNIT.read_text().replace("/opt/parti-notifier/.venv/bin/notifier", str(script)))
    return unit


def test_the_unit_has_what_the_daemon_relies_on() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=",
        "DynamicUser=yes",
        "StateDirectory=parti-notifier",
        "EnvironmentFile=",
    ):
        assert line in text


@needs_systemd
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@needs_systemd
def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match is not None, done.stdout[-500:] + done.stderr
    assert float(match.group(1)) <= 2.0

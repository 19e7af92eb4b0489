"""The Keras floor: setup.cfg requires a Keras with the fixes for the 2025-2026 advisories, the installed Keras
satisfies it, and SECURITY.md says so."""

import configparser
import os

import keras
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLOOR = Version("3.13.2")  # the first release with every fix below
ADVISORIES = ("CVE-2025-1550", "CVE-2025-9906", "CVE-2026-0897", "CVE-2026-1669")


def keras_requirement():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    requirements = [Requirement(line) for line in lines]
    found = [r for r in requirements if r.name.lower() == "keras"]
    assert len(found) == 1, f"setup.cfg must require keras exactly once; install_requires is {lines}"
    return found[0]


def test_setup_cfg_requires_the_fixed_keras():
    specifier = keras_requirement().specifier
    assert FLOOR in specifier, specifier
    for vulnerable in ("3.13.1", "3.13.0", "3.12.1", "3.11.3", "3.9.0", "3.0.0"):
        assert Version(vulnerable) not in specifier, f"keras{specifier} admits {vulnerable}"


def test_installed_keras_satisfies_the_floor():
    installed = Version(keras.__version__)
    assert installed in keras_requirement().specifier, f"keras {installed} is installed; setup.cfg needs more"
    assert installed >= FLOOR


def test_security_policy_names_the_floor_and_the_advisories():
    with open(os.path.join(ROOT, "SECURITY.md")) as f:
        text = f.read()
    assert f"keras>={FLOOR}" in text
    for advisory in ADVISORIES:
        assert advisory in text, advisory
    for threat in ("weight files", "`.keras` files", "images"):
        assert threat in text, threat

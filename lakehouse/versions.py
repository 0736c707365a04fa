"""The pinned versions, read from their single sources: requirements.lock and infra/pom.xml."""

from __future__ import annotations

import re
from functools import cache

from lakehouse.settings import REPO_ROOT


@cache
def locked(package: str) -> str:
    """The version of a Python package pinned in requirements.lock."""
    lock = (REPO_ROOT / "requirements.lock").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)", lock, re.MULTILINE)
    if match is None:
        raise KeyError(f"{package} is not pinned in requirements.lock")
    return match.group(1)


@cache
def pom_property(name: str) -> str:
    """A version property of infra/pom.xml, e.g. `spark.version`."""
    pom = (REPO_ROOT / "infra" / "pom.xml").read_text()
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom)
    if match is None:
        raise KeyError(f"no <{name}> in infra/pom.xml")
    return match.group(1)

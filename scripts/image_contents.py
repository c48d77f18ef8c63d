"""Run inside an image by scripts/images.sh: what the image holds that it must not.

Prints one line per finding and exits 1 when there is any: a distribution outside the
package's locked runtime closure (``ALLOWED``, names separated by spaces: a dev dependency
came in), test code in the installed packages, and anything secret or local that a build
context could have leaked (``.env`` files, ``.local/``, ``.git``, private keys, credential
files of package managers, the uv workspace sources). Standard library only: it runs on the
image's own interpreter.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

SKIP = ("/proc", "/sys", "/dev", "/tmp", "/run")  # noqa: S108 (paths inside the image, skipped)
SECRET_NAMES = re.compile(
    r"^(\.env(\..*)?|.*\.env|\.netrc|\.pypirc|\.npmrc|\.git-credentials|id_rsa.*|id_ed25519.*"
    r"|.*\.key|credentials(\.json)?|infra\.env)$"
)
SECRET_DIRS = {".local", ".git", ".ssh", ".aws", ".docker"}
TEST_FILE = re.compile(r"^(test_.*|.*_test|conftest)\.py$")
PRIVATE_KEY = b"PRIVATE KEY-----"
SOURCE_DIRS = ("/src", "/context", "/manifests")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_distributions(allowed: set[str]) -> list[str]:
    installed = {normalized(d.metadata["Name"]) for d in metadata.distributions()}
    return sorted(installed - allowed)


def our_packages(members: set[str]) -> list[Path]:
    """Where the workspace members' modules are installed."""
    roots = []
    for dist in metadata.distributions():
        if normalized(dist.metadata["Name"]) in members:
            for file in dist.files or []:
                if file.name == "__init__.py" and len(file.parts) == 2:
                    roots.append(Path(str(file.locate())).parent)
    return roots


def walk(top: str) -> list[tuple[str, list[str], list[str]]]:
    found = []
    for root, dirs, files in os.walk(top):
        if root.startswith(SKIP):
            dirs[:] = []
            continue
        found.append((root, dirs, files))
    return found


def main() -> int:
    allowed = {normalized(n) for n in os.environ.get("ALLOWED", "").split()}
    members = {normalized(n) for n in os.environ.get("MEMBERS", "").split()} or allowed
    findings = [f"not in the locked runtime closure: {d}" for d in extra_distributions(allowed)]
    for package in our_packages(members):
        for root, dirs, files in walk(str(package)):
            if "tests" in dirs:
                findings.append(f"test code: {root}/tests")
            findings += [f"test code: {root}/{f}" for f in files if TEST_FILE.match(f)]
    findings += [f"build sources copied: {d}" for d in SOURCE_DIRS if Path(d).exists()]
    for root, dirs, files in walk("/"):
        findings += [f"secret or local dir: {root}/{d}" for d in dirs if d in SECRET_DIRS]
        findings += [f"secret-looking file: {root}/{f}" for f in files if SECRET_NAMES.match(f)]
        if root.startswith(("/etc/ssl", "/usr/share/ca-certificates")):
            continue
        for name in files:
            path = Path(root, name)
            if path.suffix in (".pem", ".crt", ".key", "") and path.is_file():
                try:
                    if path.stat().st_size < 1_000_000 and PRIVATE_KEY in path.read_bytes():
                        findings.append(f"private key: {path}")
                except OSError:
                    continue
    for line in findings:
        print(line)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

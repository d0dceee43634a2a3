"""The admin application's wheel carries the templates, static files and migrations.

They live at the repository's top level (``templates/``, ``static/``, ``migrations/``), outside
the ``app`` package, so the wheel's build copies them into ``app/_bundled/``, where
:func:`app.config.resource_dir` finds them once installed. An editable install (``make
install``) copies nothing: the app reads them from the checkout. Everything else about the
distribution is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCES = ("templates", "static", "migrations")


class BuildWithResources(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "app" / "_bundled"
        for name in RESOURCES:
            shutil.copytree(ROOT / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithResources})

"""The config package is split by role, each part small enough to read in one sitting, and everything the
rest of the program uses is still reachable as `config.<name>`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tui_currents import config
from tui_currents.config import edits, model, reading, validation, writing

MAX_LINES = 800


def test_each_part_of_the_config_package_is_under_800_lines() -> None:
    folder = Path(config.__file__).parent
    assert Path(config.__file__).name == "__init__.py"
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"model.py", "validation.py", "reading.py", "writing.py", "edits.py"} <= set(sizes)
    assert all(n <= MAX_LINES for n in sizes.values()), sizes


def test_the_model_alone_declares_what_a_config_file_may_say() -> None:
    for part in (validation, reading, writing, edits):
        declared = [
            name
            for name, value in vars(part).items()
            if dataclasses.is_dataclass(value) and value.__module__ == part.__name__
        ]
        assert declared == [], f"{part.__name__} declares {declared}"
    assert dataclasses.is_dataclass(model.Config) and model.Config.__module__ == model.__name__


def test_every_public_name_of_the_parts_is_re_exported() -> None:
    for part in (model, validation, reading, writing, edits):
        source = Path(part.__file__).read_text()
        for name, value in vars(part).items():
            if name.startswith("_"):
                continue
            if getattr(value, "__module__", None) == part.__name__ or f"\n{name} = " in source:
                assert getattr(config, name) is value, f"config.{name}"
    assert config.load is reading.load and config.save is writing.save and config.Connector is model.Connector

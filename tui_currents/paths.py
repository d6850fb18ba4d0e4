"""The home folder (config, store, logs, keyring file) and helpers that keep what we write private.

A home given explicitly (``--home`` or ``TUI_CURRENTS_HOME``) holds everything. Otherwise the config and
themes live in the user's config folder and the store, logs and keyring file in the user's data folder,
as platformdirs names them for "tui-currents".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "tui-currents"
HOME_ENV = "TUI_CURRENTS_HOME"

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Home:
    """Where one installation keeps its files. `root` holds the config; `data` the store, logs and keyring."""

    root: Path
    data: Path

    @classmethod
    def at(cls, folder: str | os.PathLike[str]) -> Home:
        """A home that keeps everything under one folder."""
        path = Path(folder).expanduser().absolute()
        return cls(root=path, data=path)

    @classmethod
    def resolve(cls, home: Home | str | os.PathLike[str] | None = None) -> Home:
        """The explicit `home` if given, else $TUI_CURRENTS_HOME, else the platform's user folders."""
        if isinstance(home, Home):
            return home
        if home is not None and str(home):
            return cls.at(home)
        from_env = os.environ.get(HOME_ENV, "").strip()
        if from_env:
            return cls.at(from_env)
        return cls(
            root=platformdirs.user_config_path(APP_NAME, appauthor=False),
            data=platformdirs.user_data_path(APP_NAME, appauthor=False),
        )

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def themes_dir(self) -> Path:
        return self.root / "themes"

    @property
    def store_file(self) -> Path:
        return self.data / "currents.db"

    @property
    def lock_file(self) -> Path:
        return self.data / "engine.lock"

    @property
    def keyring_file(self) -> Path:
        """The encrypted keyring used where no OS keyring is available (servers, containers)."""
        return self.data / "keyring.cfg"

    @property
    def log_file(self) -> Path:
        return self.data / "logs" / "tui-currents.log"

    def ensure(self) -> Home:
        """Create the home's folders (0700) if missing; folders that already exist keep their mode."""
        for folder in (self.root, self.data, self.log_file.parent, self.themes_dir):
            make_private_dir(folder)
        return self


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` and any missing parents with mode 0700 (independent of the umask).

    Folders that already exist are left as they are: a home may be pointed at a folder the user made.
    """
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it in the meantime
            folder.mkdir(mode=PRIVATE_DIR_MODE)
            os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def write_private(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace `path` with `data` atomically, mode 0600.

    Written to a temporary file in the same folder, flushed to disk, then renamed over the target, so a
    reader sees the old content or the new, never a torn file, and a crash leaves the old file intact.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    make_private_dir(path.parent)
    # mkstemp creates the file 0600 whatever the umask.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, PRIVATE_FILE_MODE)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive OS lock on `lock_file` (created empty, 0600) for a read-modify-write that other
    processes must not interleave with. Released by the OS if the process dies. POSIX only: elsewhere
    writes stay atomic (write_private) but are not serialised."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_file = Path(lock_file)
    make_private_dir(lock_file.parent)
    fd = os.open(lock_file, os.O_CREAT | os.O_RDWR, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def touch_private(path: str | os.PathLike[str]) -> Path:
    """Create `path` empty if missing; either way leave it mode 0600.

    For files other libraries open themselves (SQLite, log handlers), which would otherwise follow the
    umask. SQLite gives its -wal and -shm files the database file's mode.
    """
    path = Path(path)
    make_private_dir(path.parent)
    # Never open an existing file: closing any descriptor of a SQLite database drops every POSIX lock this
    # process holds on it, so a connection already open here would lose its locks and the file could be
    # corrupted by another process (SQLite's documented "how to corrupt" case).
    if not path.exists():
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
        except FileExistsError:
            pass  # created meanwhile by another process; its mode is set below
        else:
            os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), where it is skipped.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

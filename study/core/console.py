"""What a person watching a terminal (or a job log) sees: logging levels and progress bars.

The packages log through `logging` (loggers named after their modules, under study, trainables
and analysis); `configure_logging` sends those records to standard output, message only, at
INFO (default), DEBUG (-v) or WARNING (-q). A command's own output (a plan, a status, a table)
is printed, not logged; errors go to standard error.

Progress is a bar (tqdm) when standard output is a terminal and plain lines at each tenth
otherwise, so job logs stay readable.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

PACKAGE_LOGGERS = ("study", "trainables", "analysis")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class _StdoutHandler(logging.StreamHandler):
    """Writes to sys.stdout as it is when each record arrives (a redirected or captured stdout)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """Log the packages' records to stdout: verbosity -1 (-q) warnings only, 0 progress, 1+ (-v)
    debug too. Calling it again replaces the earlier setting."""
    level = LEVELS[max(-1, min(1, verbosity))]
    for name in PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _StdoutHandler)]:
            logger.removeHandler(handler)
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def on_terminal() -> bool:
    """Whether a person is watching: standard output is a terminal (bars), else plain lines."""
    return sys.stdout.isatty()


class Progress:
    """Progress of `total` things: a tqdm bar on a terminal (unless -q), else a log line at each
    tenth, at `plain_level` (DEBUG for progress too chatty for a job log at the default level)."""

    def __init__(self, label: str, total: int, unit: str, logger: logging.Logger,
                 plain_level: int = logging.INFO) -> None:
        self.label, self.total, self.unit, self.logger, self.plain_level = label, total, unit, logger, plain_level
        self.done = 0
        self.every = max(1, total // 10)
        self.bar = None
        if on_terminal() and logger.isEnabledFor(logging.INFO):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit, leave=False, file=sys.stdout)

    def advance(self, count: int = 1, note: str = "") -> None:
        """`count` more done; `note` is shown on the bar, or in the plain line when one is due."""
        before, self.done = self.done, self.done + count
        if self.bar is not None:
            self.bar.update(count)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
        elif self.done // self.every > before // self.every and self.done < self.total:
            self._line(note)

    def finish(self, note: str = "") -> None:
        """Close the bar; the last line is logged either way (it stays in the log and the scrollback)."""
        if self.bar is not None:
            self.bar.close()
        self._line(note)

    def _line(self, note: str) -> None:
        self.logger.log(self.plain_level, f"  {self.label}: {self.done}/{self.total} {self.unit}"
                        f"{', ' + note if note else ''}")

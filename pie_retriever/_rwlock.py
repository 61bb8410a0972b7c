"""A phase-fair readers-writer lock: many readers at once, one writer alone, neither side starved."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class RWLock:
    """``with lock.read(): ...`` for concurrent readers, ``with lock.write(): ...`` for exclusive writers.

    Phase-fair (Brandenburg & Anderson): reading and writing phases alternate whenever both sides wait.

    - A reader enters at once unless a writer holds the lock or waits for it; then it waits for the end of
      the *next* writing phase, and the writer that ends it admits every reader that was waiting (the lock is
      handed to them, so a second writer cannot slip in before they run).
    - Writers are served first come, first served (tickets); a writer waits until the readers of the current
      reading phase are done, but readers arriving after it wait behind it.

    So a reader waits for at most one writer, and a writer for at most one reading phase plus the writers
    ahead of it. Not re-entrant: a thread holding ``read`` must not ask for ``write`` (nor the reverse).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._readers_ok = threading.Condition(self._mutex)
        self._writers_ok = threading.Condition(self._mutex)
        self._readers = 0  # readers holding the lock (including those admitted by a writer but not yet woken)
        self._readers_waiting = 0
        self._writer = False
        self._writers_waiting = 0
        self._phase = 0  # incremented each time a writer hands the lock to waiting readers
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    # -- readers ---------------------------------------------------------------------------------------
    def acquire_read(self) -> None:
        with self._mutex:
            if not self._writer and not self._writers_waiting:
                self._readers += 1
                return
            self._readers_waiting += 1
            phase = self._phase
            try:
                while self._phase == phase:
                    self._readers_ok.wait()
            except BaseException:
                if self._phase == phase:  # still waiting: withdraw
                    self._readers_waiting -= 1
                else:  # admitted meanwhile: give the place back
                    self._release_read_locked()
                raise

    def release_read(self) -> None:
        with self._mutex:
            self._release_read_locked()

    def _release_read_locked(self) -> None:
        self._readers -= 1
        if not self._readers and self._writers_waiting:
            self._writers_ok.notify_all()

    # -- writers ---------------------------------------------------------------------------------------
    def acquire_write(self) -> None:
        with self._mutex:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or ticket != self._serving:
                    self._writers_ok.wait()
            except BaseException:
                self._writers_waiting -= 1
                self._abandoned.add(ticket)
                self._skip_abandoned()
                self._wake_after_writer_left()
                raise
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._mutex:
            self._writer = False
            self._serving += 1
            self._skip_abandoned()
            self._wake_after_writer_left()

    def _skip_abandoned(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1

    def _wake_after_writer_left(self) -> None:
        """Hand the lock to the readers that waited (a new reading phase), else to the next writer."""
        if self._writer:
            return
        if self._readers_waiting:
            self._readers += self._readers_waiting
            self._readers_waiting = 0
            self._phase += 1
            self._readers_ok.notify_all()
        elif self._writers_waiting and not self._readers:
            self._writers_ok.notify_all()

    # -- context managers ------------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

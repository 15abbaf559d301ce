"""Stop strings that straddle a seam: begun by the instance that broke, ended by the next.

The continuing server checks stop strings only in the text it generates, so a stop string
that began in what the client already holds would pass unseen. The first characters of the
continuation are held until no stop string can straddle any more (one character less than
the longest), and the stream ends at a straddling one.
"""

from __future__ import annotations

from collections.abc import Sequence


class SeamStop:
    """Watches the start of a continuation for stop strings that began before the seam."""

    def __init__(self, received: str, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if len(s) > 1]  # a 1-character stop cannot straddle
        self._need = max((len(s) for s in self.stops), default=1) - 1
        self._tail = received[-self._need :] if self._need else ""
        self._held = ""
        self.watching = bool(self._tail and self.stops)
        #: A straddling stop string ended the reply.
        self.stopped = False

    def feed(self, text: str) -> str:
        """What of ``text`` may go to the client now (the rest is held, or cut at a stop)."""
        if not self.watching:
            return text
        self._held += text
        joined = self._tail + self._held
        for start in range(len(self._tail)):
            for stop in self.stops:
                if start + len(stop) > len(self._tail) and joined.startswith(stop, start):
                    # The client holds the stop string's beginning: nothing more goes out.
                    self.watching, self.stopped, self._held = False, True, ""
                    return ""
        if len(self._held) < self._need:
            return ""
        return self.release()

    def release(self) -> str:
        """The end of the continuation: what is held goes out."""
        held, self._held = self._held, ""
        self.watching = False
        return held

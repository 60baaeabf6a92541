"""Progress over a list of items outside Lightning (`bertforge embed`, `similarity`, `fill-mask`, `predict`):
light to import, so the command line does not pay for Lightning to report it."""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ItemProgress:
    """`[predict] 12,000/100,000 examples (12%), 310/s, 0m38s elapsed, ETA 4m44s` on stderr: one
    line rewritten in place on a terminal, a line every `every_s` in logs; nothing for work done
    within `quiet_s` (a handful of sentences prints only its answer)."""

    def __init__(self, label: str, total: int, unit: str = "examples", every_s=30.0, quiet_s=5.0, stream=None):
        self.label, self.total, self.unit, self.every_s, self.quiet_s = label, total, unit, every_s, quiet_s
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.t0, self.last, self.shown = 0, time.perf_counter(), 0.0, False

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"[{self.label}] {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(1, self.total):.0f}%)"
        text += f", {rate:,.0f}/s, {duration(elapsed)} elapsed"
        if 0 < rate and self.done < self.total:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        return text

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        due = not self.shown or now - self.last >= (0.5 if self.tty else self.every_s)
        if now - self.t0 < self.quiet_s or not due or self.done >= self.total:
            return  # the first line once quiet_s has passed, then one every interval; close() says done
        self.last, self.shown = now, True
        self.stream.write(f"\r\033[K{self.line(now)}" if self.tty else self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The final line, where a line was shown."""
        if self.shown:
            text = self.line(time.perf_counter()) + ", done"
            self.stream.write(f"\r\033[K{text}\n" if self.tty else text + "\n")
            self.stream.flush()

"""Named checks that all run: a failure is counted and reported, and never
stops the checks after it. Used by infra/check_k8s.py and
infra/local_deploy.py --verify. Standard library only.
"""

import sys


class Checks:
    """A check is a function that returns a detail to show (or None) or
    raises one of `errors`, its failure: "FAIL name: why" on `out` (default
    stdout); with `show_passes`, "PASS name (detail)" too."""

    def __init__(self, errors=(AssertionError,), out=None, show_passes=True):
        self.errors = tuple(errors)
        self.out = out
        self.show_passes = show_passes
        self.passed = 0
        self.failed = 0

    def say(self, line):
        print(line, file=self.out or sys.stdout, flush=True)

    def run(self, name, fn):
        try:
            detail = fn()
        except self.errors as e:
            self.failed += 1
            why = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {getattr(e, 'message', None) or e}"
            self.say(f"FAIL {name}: {why}")
            return
        self.passed += 1
        if self.show_passes:
            self.say(f"PASS {name}" + (f" ({detail})" if detail else ""))

"""One exception type for input a user can fix, so the CLI can print it as one line and exit non-zero."""


class PetCtInputError(ValueError):
    """Bad or untrustworthy input. The message names the file (or field) and the problem."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class PetCtWarning(UserWarning):
    """Input that works but may mislead (part of the PET outside the CT, labels above 1): one line on the CLI."""

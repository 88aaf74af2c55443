"""The one error type bad input raises: it names the field and the fix."""


class ConfigError(ValueError):
    """Raised before any resource is registered, so a refused input creates nothing."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}.")

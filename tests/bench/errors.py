"""Outcomes of a child that are not figures."""


class NotBuilt(Exception):
    """A runstream piece this scenario needs has not landed yet."""


class NotInstalled(Exception):
    """A peer is not installed in this environment."""


class NotApplicable(Exception):
    """The peer cannot do this scenario at all (e.g. W&B offline has no query API)."""

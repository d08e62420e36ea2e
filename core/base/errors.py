"""Errors that carry a message meant for the person at the keyboard."""


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits 2; pages show it."""


class ModelMismatchError(UserError):
    """A probe was loaded against a model it was not trained on."""

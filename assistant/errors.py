"""The one base of the failures a user can act on, shared by every stage.

Each stage raises its own subclass with a message that says what went wrong and what to do next ("Run `assistant
index --rebuild`."). The page and the CLI catch AssistantError and show that message; any other exception is a bug,
logged in full and shown as one generic line, never as a stack trace.
"""


class AssistantError(Exception):
    """An expected failure: its message is for the user, and ends with what to do next."""

    exit_code = 3  # the CLI's exit status when it ends on this error


class ModelUnavailable(AssistantError):
    """The chat model could not be loaded or reached (the local file, or a server); the message says what to do."""

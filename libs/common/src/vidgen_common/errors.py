"""Errors raised by the common library.

VidgenError
├── ConfigurationError      settings that must not be used here (e.g. dev secrets in production)
├── EventError
│   ├── UnknownEventType    a CloudEvent whose type no model is registered for
│   └── MalformedEvent      headers or payload that do not decode into an event
├── StorageError            the object store refused or failed an operation
├── PermanentError          raised by a handler when retrying cannot help (straight to DLQ)
└── TransientError          a dependency is away for now: retried until it is back, never DLQ
"""


class VidgenError(Exception):
    """Base of every error raised on purpose by vidgen code."""


class ConfigurationError(VidgenError):
    """Settings are invalid for the environment they are used in."""


class EventError(VidgenError):
    """An event could not be encoded or decoded."""


class UnknownEventType(EventError):
    """No model is registered for a CloudEvent `type`."""


class MalformedEvent(EventError):
    """A Kafka record does not hold a valid CloudEvent of a known schema."""


class StorageError(VidgenError):
    """The object store refused or failed an operation."""


class PermanentError(VidgenError):
    """Raised by an event handler when retrying cannot help: the record goes to the DLQ."""


class TransientError(VidgenError):
    """Raised when a dependency is unavailable for now: the work is retried until it is back.

    :func:`vidgen_common.transient.is_transient` also recognises the database, Kafka, object
    store and network errors that mean the same without this class.
    """

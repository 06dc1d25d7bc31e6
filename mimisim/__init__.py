"""mimisim: a deterministic discrete-event simulator of the IETF MIMI protocol."""

__version__ = "0.1.0"

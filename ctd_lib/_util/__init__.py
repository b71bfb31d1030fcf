"""Helpers every room of the library shares: argument checks, atomic file writes, progress bars,
and the torch state (device, buffers, random state) a computation must leave as it found it.
Not part of the public API."""


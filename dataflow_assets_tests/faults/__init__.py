"""Fault tests of the SPEC section 6 guarantees: crashes (kill -9 at every stage of a generation),
destination faults, concurrency, bad input, secrets. See docs/generations.md."""

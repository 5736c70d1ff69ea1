"""Local emulators of the ITSM APIs itbsc reads, with seeded realistic data.

Used by ``itbsc demo``, the integration tests, fault injection and the
benchmarks. Served on loopback only.
"""

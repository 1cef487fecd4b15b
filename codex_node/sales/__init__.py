"""The selling side: the slot queue, reservations and availabilities, the per-slot sales agents and their books."""

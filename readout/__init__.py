"""A/B experiment readout: per-visitor outcomes -> metrics per variant, lift with intervals, tests, SRM."""

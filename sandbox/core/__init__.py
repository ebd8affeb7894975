"""Pieces every sandbox server shares: timing, faults, auth, certificates, addresses."""

"""Activation: deliver audience membership to destinations, exactly once."""

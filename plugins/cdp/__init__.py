"""Warehouse-native audience activation: land, validate, model, activate."""

"""Integrations with other training stacks (each imports its framework only when used):
``dynst_fast.integrations.lightning.DynSTCallback``."""

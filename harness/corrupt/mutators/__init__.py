"""Mutator families, one module each; every module registers its mutator on import."""

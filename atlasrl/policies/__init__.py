"""Policies that are not text generators (the text policies live in atlasrl/models/)."""

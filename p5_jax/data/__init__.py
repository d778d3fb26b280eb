"""Readers, splits, item indexing and explanation extraction for P5 datasets."""

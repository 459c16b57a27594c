"""Bundled real data sets, written out as raw files the way a user's data arrives."""

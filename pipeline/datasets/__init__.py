"""Dataset versions: the schema (defined once), the manifest, the atomic writer, the readers."""

"""One module per scenario family; :mod:`.stage` holds the filled stores they share."""

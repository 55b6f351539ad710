"""Files written whole or not at all (atomic), the lock that keeps one writer per folder (lock), and the
progress bar long work shows (progress). The lowest wing: it knows nothing of arrays or models."""

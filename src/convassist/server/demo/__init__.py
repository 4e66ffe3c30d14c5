"""`convassist demo`: a public texting corpus loaded as if a device had synced it."""

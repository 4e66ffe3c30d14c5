"""Online measures of Smart Reply: coverage, usage by slot, and how much the owner edits."""

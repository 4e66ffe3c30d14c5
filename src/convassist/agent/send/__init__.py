"""Sending the owner's replies through Messages: the outbox loop, the journal, the senders."""

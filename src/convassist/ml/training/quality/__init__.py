"""What a training job measures besides perplexity: its held-out suggestions, and the gate."""

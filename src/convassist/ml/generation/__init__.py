"""Generation: `/generate`, async generation jobs, the LLM manager, the response cache."""

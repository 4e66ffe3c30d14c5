"""Training: LoRA jobs (`/training/jobs`), their runner process, trainer, data, export, eval."""

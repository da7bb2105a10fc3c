"""What a reviewer reads: one module per output (swaps, pictures, evaluation)."""

"""Model code shared by training, evaluation and serving, so all three compute identical outputs."""

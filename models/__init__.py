"""Model code shared by training, evaluation and serving, so all three compute identical outputs.
May import: mlops_cli.common only (the predictor image carries models/ and mlops_cli/, nothing heavier).
"""

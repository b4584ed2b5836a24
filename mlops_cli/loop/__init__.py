"""The closed loop: labelled feedback -> retrain -> gate -> challenger -> canary -> promote or roll back.
May import: targets and everything beneath them (the CLI passes the target in).
"""

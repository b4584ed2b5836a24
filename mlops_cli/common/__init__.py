"""What every part shares and no part owns: errors, atomic files, checks, progress, time windows,
secrets, the text policy and service logging.
May import: nothing of ours.
"""

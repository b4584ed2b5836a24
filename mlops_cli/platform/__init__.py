"""The local platform's processes: supervisord, the process table, the restart policy, Prometheus,
`mlops doctor`'s checks and batch scoring.
May import: data and what data may.
"""

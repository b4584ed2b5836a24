"""The local platform's processes: supervisord, the process table, the restart policy, Prometheus,
`mlops doctor`'s checks, batch scoring (batch_predict.py, its CSV side batch_csv.py) and what
`down --purge` deletes (purge.py).
May import: data and what data may.
"""

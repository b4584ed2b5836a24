"""Planning for EKS: Kubernetes versions, node capacity, cost, our images and the stack's local state.
May import: charts and what charts may.
"""

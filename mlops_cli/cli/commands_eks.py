"""`mlops eks-token`: the kubeconfig exec plugin of EKS clusters made by `mlops up --target eks`.

Hidden from `--help`: people never type it, kubectl and the Kubernetes client run it.
"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("eks-token", hidden=True)
    def eks_token(
        cluster: str = typer.Option(..., "--cluster", help="EKS cluster name"),
        region: str = typer.Option(..., "--region", help="AWS region of the cluster"),
    ) -> None:
        """Print an ExecCredential with a bearer token for the cluster (like `aws eks get-token`)."""
        from ..adapters.eks_token import exec_credential

        typer.echo(json.dumps(exec_credential(cluster, region)))

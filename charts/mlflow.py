"""Step 6: the MLflow tracking server and model registry.

The image is ours (`image_ref(config, "mlflow")`, built from charts/images/): the upstream
`ghcr.io/mlflow/mlflow` image has neither boto3 (S3 artifacts) nor psycopg (Postgres backend).

Artifacts go to S3 when `[kubernetes].mlflow_artifacts` is an s3:// URL (credentials via IRSA on EKS
with `mlflow_role_arn`, else from a Secret filled from the environment), otherwise onto a PVC.
The backend DB is sqlite on that PVC unless `mlflow_backend_uri` names an external DB (kept in a Secret).
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import secrets
from .image_refs import image_ref
from .objects import container, deployment, pvc, secret_env, service, service_account

PORT = 5000
DATA_PVC = "mlflow-data"
ARTIFACTS_DIR = "/mlflow/artifacts"


def tracking_uri(config: Config) -> str:
    return f"http://mlflow.{config.kubernetes.namespace}.svc.cluster.local:{PORT}"


def allowed_hosts(config: Config) -> list[str]:
    """Host headers MLflow accepts (its DNS-rebinding guard, `mlflow server --allowed-hosts`, which sets
    MLFLOW_SERVER_ALLOWED_HOSTS: mlflow/cli/__init__.py and mlflow/server/security_utils.py in 3.17.2).

    Its default accepts only localhost and private IPs, so `mlflow.<ns>.svc.cluster.local:5000` callers
    (drift service, deploy, Prometheus) would get 403. A list replaces the default, so the names
    MLflow is reached by are listed in every form with and without the port, plus localhost (the probes
    send it; `kubectl port-forward` users too). Hosts match exactly unless they hold a `*`.
    """
    ns = config.kubernetes.namespace
    names = ["mlflow", f"mlflow.{ns}", f"mlflow.{ns}.svc", f"mlflow.{ns}.svc.cluster.local", "localhost", "127.0.0.1"]
    return [form for name in names for form in (name, f"{name}:{PORT}")] + ["localhost:*", "127.0.0.1:*"]


def artifacts_destination(config: Config) -> str:
    return config.kubernetes.mlflow_artifacts or ARTIFACTS_DIR


def objects(config: Config, platform_secrets: secrets.PlatformSecrets | None) -> list[dict[str, Any]]:
    k = config.kubernetes
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if k.mlflow_backend_uri:
        env.append(secret_env("MLFLOW_BACKEND_STORE_URI", secrets.MLFLOW_BACKEND, "uri"))
        backend = "$(MLFLOW_BACKEND_STORE_URI)"  # expanded by the kubelet: the URL never appears in the spec
    else:
        backend = "sqlite:////mlflow/db/mlflow.db"
    if secrets.uses_s3_keys(config):
        env += [secret_env("AWS_ACCESS_KEY_ID", secrets.MLFLOW_S3, "AWS_ACCESS_KEY_ID"),
                secret_env("AWS_SECRET_ACCESS_KEY", secrets.MLFLOW_S3, "AWS_SECRET_ACCESS_KEY")]
    command = ["mlflow", "server", "--host", "0.0.0.0", "--port", str(PORT), "--backend-store-uri", backend,
               "--artifacts-destination", artifacts_destination(config), "--serve-artifacts",
               "--allowed-hosts", ",".join(allowed_hosts(config))]
    image = image_ref(config, "mlflow")
    c = container(config, "mlflow", "mlflow", image, command=command, port=PORT, probe_path="/health", probe_host=f"localhost:{PORT}",
                  env=env, mounts=[{"name": "data", "mountPath": "/mlflow"}])
    # The sqlite file and the artifact directory both live on the PVC: one writer, so no rolling update.
    init = container(config, "mlflow", "make-dirs", image, command=["mkdir", "-p", "/mlflow/db", ARTIFACTS_DIR],
                     mounts=[{"name": "data", "mountPath": "/mlflow"}])
    annotations = {"eks.amazonaws.com/role-arn": k.mlflow_role_arn} if k.mlflow_role_arn else None
    # The service account is the name the EKS stack's IRSA role trusts (stacks/identity.py): one setting
    # for both sides. The token is only needed for IRSA (the AWS SDK exchanges it for role credentials).
    dep = deployment(config, "mlflow", [c], strategy="Recreate", service_account=config.eks.service_account,
                     init_containers=[init], automount_token=bool(k.mlflow_role_arn),
                     volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": DATA_PVC}}])
    return [
        *secrets.mlflow_secrets(config, platform_secrets),
        service_account(config, config.eks.service_account, "mlflow", annotations),
        pvc(config, DATA_PVC, "mlflow", k.mlflow_volume_size, access_mode=k.mlflow_access_mode),
        dep,
        service(config, "mlflow", {"http": (PORT, PORT)}),
    ]
